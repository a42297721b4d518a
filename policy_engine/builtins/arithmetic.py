"""Exact arithmetic on Rego numbers (int or Decimal), shared by operators and number built-ins.

Integers stay Python ints (unbounded, exact). As soon as a Decimal takes part,
`+ - *` run in `EXACT_CONTEXT` (exact to 1,000 significant digits) and `/` in `DECIMAL_CONTEXT`
(34 significant digits), so `0.1 + 0.2 == 0.3` holds and money sums never
pick up binary-float noise.
"""

from __future__ import annotations

from decimal import Decimal

from policy_engine.builtins.base import BUILTIN_ERROR, BuiltinError, Number, integral_int
from policy_engine.values import DECIMAL_CONTEXT, EXACT_CONTEXT, normalize_number

__all__ = ["add", "divide", "multiply", "remainder", "subtract"]


def _decimal(number: Number) -> Decimal:
    return number if isinstance(number, Decimal) else Decimal(number)


def add(a: Number, b: Number) -> Number:
    if type(a) is int and type(b) is int:
        return a + b
    return normalize_number(EXACT_CONTEXT.add(_decimal(a), _decimal(b)))


def subtract(a: Number, b: Number) -> Number:
    if type(a) is int and type(b) is int:
        return a - b
    return normalize_number(EXACT_CONTEXT.subtract(_decimal(a), _decimal(b)))


def multiply(a: Number, b: Number) -> Number:
    if type(a) is int and type(b) is int:
        return a * b
    return normalize_number(EXACT_CONTEXT.multiply(_decimal(a), _decimal(b)))


def divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise BuiltinError(BUILTIN_ERROR, "div: divide by zero")
    if type(a) is int and type(b) is int and a % b == 0:
        return a // b
    return normalize_number(DECIMAL_CONTEXT.divide(_decimal(a), _decimal(b)))


def remainder(a: Number, b: Number) -> Number:
    """Go's `%`: integers only, the result takes the sign of the dividend."""
    dividend, divisor = _integral(a, 1), _integral(b, 2)
    if divisor == 0:
        raise BuiltinError(BUILTIN_ERROR, "rem: modulo by zero")
    magnitude = abs(dividend) % abs(divisor)
    return -magnitude if dividend < 0 else magnitude


def _integral(number: Number, position: int) -> int:
    if isinstance(number, int):
        return number
    if number == number.to_integral_value():
        return integral_int("rem", position, number)
    raise BuiltinError(BUILTIN_ERROR, "rem: modulo on floating-point number")
