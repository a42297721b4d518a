"""Bitwise built-ins on integers: bits.and, or, xor, negate, lsh, rsh (Go's big.Int semantics)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    want_number,
)

__all__ = ["BUILTINS"]

# A shift this large would build a number of gigabytes.
_MAX_SHIFT = 1_000_000


def _integer(name: str, position: int, value: object) -> int:
    number = want_number(name, position, value)
    if isinstance(number, Decimal):
        if number != number.to_integral_value() or number.adjusted() > 400:
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f"{name}: operand {position} must be integer number but got floating-point number",
            )
        return int(number)
    if not -(2**63) <= number < 2**63:
        # OPA reads integers beyond int64 as floating-point numbers here (issue 18).
        raise BuiltinError(
            EVAL_TYPE_ERROR,
            f"{name}: operand {position} must be integer number but got floating-point number",
        )
    return number


def _binary(name: str, op: Callable[[int, int], int]) -> Callable[..., object]:
    def apply(a: object, b: object) -> int:
        return op(_integer(name, 1, a), _integer(name, 2, b))

    apply.__name__ = name.replace(".", "_")
    return apply


def negate(x: object) -> int:
    """Bitwise complement: -x - 1."""
    return ~_integer("bits.negate", 1, x)


def _shift(name: str, left: bool) -> Callable[..., object]:
    def apply(a: object, s: object) -> int:
        value, amount = _integer(name, 1, a), _integer(name, 2, s)
        if amount < 0:
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f"{name}: operand 2 must be an unsigned integer number but got a negative integer",
            )
        if left and amount > _MAX_SHIFT:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: shift of {amount} bits is too large")
        return value << amount if left else value >> amount

    apply.__name__ = name.replace(".", "_")
    return apply


_TWO = "(x: number, y: number) -> number"

BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "bits.and",
        _binary("bits.and", int.__and__),
        _TWO,
        "bits.and(12, 10)",
        doc="Bitwise AND of two integers.",
    ),
    builtin(
        "bits.or",
        _binary("bits.or", int.__or__),
        _TWO,
        "bits.or(12, 10)",
        doc="Bitwise OR of two integers.",
    ),
    builtin(
        "bits.xor",
        _binary("bits.xor", int.__xor__),
        _TWO,
        "bits.xor(12, 10)",
        doc="Bitwise exclusive OR of two integers.",
    ),
    builtin("bits.negate", negate, "(x: number) -> number", "bits.negate(5)"),
    builtin(
        "bits.lsh",
        _shift("bits.lsh", left=True),
        "(x: number, s: number) -> number",
        "bits.lsh(1, 10)",
        doc="Shifts an integer left by s bits.",
    ),
    builtin(
        "bits.rsh",
        _shift("bits.rsh", left=False),
        "(x: number, s: number) -> number",
        "bits.rsh(1024, 3)",
        doc="Shifts an integer right by s bits (arithmetic shift).",
    ),
)
