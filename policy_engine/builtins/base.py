"""What every built-in family shares: the `Builtin` record, `BuiltinError`, operand checks.

A built-in is a plain function over policy values (see `policy_engine.values`).
It returns a value, or `UNDEFINED`, or raises `BuiltinError`:

- code `eval_type_error` when an operand has the wrong type
  ("count: operand 1 must be one of {array, object, set, string} but got number");
- code `eval_builtin_error` when the operands are well typed but the operation
  fails ("div: divide by zero").

Messages are complete and start with the built-in's name, as OPA's do. Whether
an error aborts evaluation (strict) or makes the expression undefined is the
engine's decision, not the built-in's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import msgspec

from policy_engine.builtins.rego_types import Signature, parse_signature
from policy_engine.values import is_number, type_name

__all__ = [
    "BUILTIN_ERROR",
    "EVAL_TYPE_ERROR",
    "Builtin",
    "BuiltinError",
    "Number",
    "builtin",
    "integral_int",
    "want_array",
    "want_collection",
    "want_int64",
    "want_integer",
    "want_number",
    "want_object",
    "want_set",
    "want_string",
]

EVAL_TYPE_ERROR: Final = "eval_type_error"
BUILTIN_ERROR: Final = "eval_builtin_error"

Number = int | Decimal

# Integers a built-in will materialise from a Decimal; larger ones are refused.
MAX_INTEGER_DIGITS: Final = 400


class Builtin(msgspec.Struct, frozen=True):
    """One built-in function: its Rego name, how many operands it takes, and the code.

    `signature` holds OPA's declared types (None only for the engine's internal
    helpers); `context` built-ins take the evaluation's `Ctx` before their
    operands (the clock, the random seed, print); `example` is a call shown in
    docs/builtins.md.
    """

    name: str
    arity: int
    fn: Callable[..., object]
    signature: Signature | None = None
    context: bool = False
    example: str = ""
    doc: str = ""

    @property
    def description(self) -> str:
        """One sentence for the reference: `doc`, else the docstring's first line."""
        if self.doc:
            return self.doc
        text = (self.fn.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


class BuiltinError(Exception):
    """A built-in could not produce a value; `.code` is OPA's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def builtin(
    name: str,
    fn: Callable[..., object],
    signature: str,
    example: str,
    *,
    doc: str = "",
    context: bool = False,
) -> Builtin:
    """A registry entry: `signature` in `rego_types` syntax, `example` a call that is defined."""
    parsed = parse_signature(signature)
    return Builtin(
        name=name,
        arity=parsed.arity,
        fn=fn,
        signature=parsed,
        context=context,
        example=example,
        doc=doc,
    )


def operand_error(name: str, position: int, expected: str, value: object) -> BuiltinError:
    """OPA's operand type error: "<name>: operand <n> must be <expected> but got <type>"."""
    return BuiltinError(
        EVAL_TYPE_ERROR,
        f"{name}: operand {position} must be {expected} but got {type_name(value)}",
    )


def want_string(name: str, position: int, value: object) -> str:
    if isinstance(value, str):
        return value
    raise operand_error(name, position, "string", value)


def want_number(name: str, position: int, value: object) -> Number:
    if is_number(value):
        if isinstance(value, float):  # stray float from input: read it exactly
            return Decimal(repr(value))
        return value  # type: ignore[return-value]
    raise operand_error(name, position, "number", value)


def want_integer(name: str, position: int, value: object) -> int:
    number = want_number(name, position, value)
    if isinstance(number, int):
        return number
    if number == number.to_integral_value():
        return integral_int(name, position, number)
    raise BuiltinError(
        EVAL_TYPE_ERROR,
        f"{name}: operand {position} must be integer number but got floating-point number",
    )


_INT64: Final = (-(2**63), 2**63 - 1)


def want_int64(name: str, position: int, value: object) -> int:
    """An integer operand that OPA reads as a Go int64: beyond that range OPA sees a
    floating-point number (`substring("abc", 0, 12345678901234567890)` is a type error)."""
    number = want_integer(name, position, value)
    if not _INT64[0] <= number <= _INT64[1]:
        raise BuiltinError(
            EVAL_TYPE_ERROR,
            f"{name}: operand {position} must be integer number but got floating-point number",
        )
    return number


def integral_int(name: str, position: int, number: Decimal) -> int:
    """An integral Decimal as int, refusing ones like 1e999999999 that would take gigabytes."""
    if number.adjusted() >= MAX_INTEGER_DIGITS:
        raise BuiltinError(
            BUILTIN_ERROR,
            f"{name}: operand {position} has more than {MAX_INTEGER_DIGITS} digits",
        )
    return int(number)


def want_array(name: str, position: int, value: object) -> tuple[Any, ...] | list[Any]:
    if isinstance(value, (tuple, list)):
        return value
    raise operand_error(name, position, "array", value)


def want_object(name: str, position: int, value: object) -> Mapping[Any, Any]:
    if isinstance(value, dict):
        return value
    raise operand_error(name, position, "object", value)


def want_set(name: str, position: int, value: object) -> frozenset[Any]:
    if isinstance(value, frozenset):
        return value
    raise operand_error(name, position, "set", value)


def want_collection(name: str, position: int, value: object) -> Iterable[Any]:
    """An array or a set (the operand of sum, product, max, min, sort, concat)."""
    if isinstance(value, (tuple, list, frozenset)):
        return value
    raise operand_error(name, position, "one of {array, set}", value)
