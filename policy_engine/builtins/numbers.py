"""Number built-ins: abs, round, ceil, floor, numbers.range, to_number, format_int."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Final

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    Number,
    builtin,
    integral_int,
    operand_error,
    want_integer,
    want_number,
)
from policy_engine.values import EXACT_CONTEXT, int_text, is_number, normalize_number

__all__ = ["BUILTINS", "MAX_RANGE_LENGTH"]

# What Go's strconv.ParseFloat accepts in decimal form (OPA's to_number uses it).
_DECIMAL_SYNTAX: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# A range this long would take hundreds of megabytes; no policy needs one.
MAX_RANGE_LENGTH: Final = 1_000_000
_FORMAT_INT_BASES: Final[dict[Number, str]] = {2: "b", 8: "o", 10: "d", 16: "x"}


def absolute(x: object) -> Number:
    number = want_number("abs", 1, x)
    if isinstance(number, Decimal):
        return number.copy_abs()  # exact; abs() would round to the thread context's precision
    return abs(number)


def _to_integral(name: str, x: object, rounding: str) -> Number:
    number = want_number(name, 1, x)
    if isinstance(number, int):
        return number
    return normalize_number(number.to_integral_value(rounding=rounding, context=EXACT_CONTEXT))


def round_half_away(x: object) -> Number:
    """Go's math.Round: halves round away from zero (2.5 -> 3, -2.5 -> -3)."""
    return _to_integral("round", x, ROUND_HALF_UP)


def ceil(x: object) -> Number:
    return _to_integral("ceil", x, ROUND_CEILING)


def floor(x: object) -> Number:
    return _to_integral("floor", x, ROUND_FLOOR)


def number_range(a: object, b: object) -> tuple[int, ...]:
    """Every integer from a to b, both included, counting down when b < a."""
    start, stop = want_integer("numbers.range", 1, a), want_integer("numbers.range", 2, b)
    if abs(stop - start) >= MAX_RANGE_LENGTH:
        raise BuiltinError(
            BUILTIN_ERROR,
            f"numbers.range: {abs(stop - start) + 1} numbers are more than the limit of "
            f"{MAX_RANGE_LENGTH}; iterate over a smaller range",
        )
    step = 1 if stop >= start else -1
    return tuple(range(start, stop + step, step))


def range_step(a: object, b: object, step: object) -> tuple[int, ...]:
    """Integers from a towards b (b included when reached), `step` apart."""
    start = want_integer("numbers.range_step", 1, a)
    stop = want_integer("numbers.range_step", 2, b)
    stride = want_integer("numbers.range_step", 3, step)
    if stride <= 0:
        raise BuiltinError(
            BUILTIN_ERROR, "numbers.range_step: step must be a positive number above zero"
        )
    if abs(stop - start) // stride >= MAX_RANGE_LENGTH:
        raise BuiltinError(
            BUILTIN_ERROR,
            f"numbers.range_step: more than the limit of {MAX_RANGE_LENGTH} numbers; "
            "iterate over a smaller range",
        )
    if stop < start:
        stride = -stride
    return tuple(range(start, stop + (1 if stride > 0 else -1), stride))


def to_number(x: object) -> Number:
    if x is None:
        return 0
    if isinstance(x, bool):
        return int(x)
    if is_number(x):
        return want_number("to_number", 1, x)
    if isinstance(x, str):
        return parse_number(x)
    raise operand_error("to_number", 1, "one of {null, boolean, number, string}", x)


@lru_cache(maxsize=4096)
def parse_number(text: str) -> Number:
    """A number from its text, as `to_number` reads it; raises BuiltinError."""
    # Cached: policies convert the same money strings (limits, prices) on every request.
    if _DECIMAL_SYNTAX.fullmatch(text) is None:
        raise BuiltinError(
            BUILTIN_ERROR, f'to_number: strconv.ParseFloat: parsing "{text}": invalid syntax'
        )
    return normalize_number(Decimal(text))


def format_int(x: object, base: object) -> str:
    """The integer part of x (truncated toward zero) written in base 2, 8, 10 or 16."""
    number = want_number("format_int", 1, x)
    radix = want_number("format_int", 2, base)
    verb = _FORMAT_INT_BASES.get(radix)  # Decimal("16.0") hashes and compares like 16
    if verb is None:
        raise BuiltinError(EVAL_TYPE_ERROR, "format_int: operand 2 must be one of {2, 8, 10, 16}")
    integer = number if isinstance(number, int) else _truncate(number)
    sign = "-" if integer < 0 else ""
    digits = int_text(abs(integer)) if verb == "d" else format(abs(integer), verb)
    return sign + digits


def _truncate(number: Decimal) -> int:
    integral = number.to_integral_value(rounding=ROUND_DOWN, context=EXACT_CONTEXT)
    return integral_int("format_int", 1, integral)


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "numbers.range_step",
        range_step,
        "(a: number, b: number, step: number) -> array[number]",
        "numbers.range_step(0, 10, 5)",
    ),
    builtin(
        "abs", absolute, "(x: number) -> number", "abs(-2.5)", doc="The absolute value of a number."
    ),
    builtin("round", round_half_away, "(x: number) -> number", "round(2.5)"),
    builtin(
        "ceil",
        ceil,
        "(x: number) -> number",
        "ceil(1.2)",
        doc="Rounds a number up to the nearest integer.",
    ),
    builtin(
        "floor",
        floor,
        "(x: number) -> number",
        "floor(1.8)",
        doc="Rounds a number down to the nearest integer.",
    ),
    builtin(
        "numbers.range",
        number_range,
        "(a: number, b: number) -> array[number]",
        "numbers.range(1, 4)",
    ),
    builtin(
        "to_number",
        to_number,
        "(x: null | boolean | number | string) -> number",
        'to_number("42.5")',
        doc="The number a string, boolean, null or number stands for.",
    ),
    builtin(
        "format_int", format_int, "(number: number, base: number) -> string", "format_int(255, 16)"
    ),
)
