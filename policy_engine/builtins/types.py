"""Type built-ins: the `is_*` family (string, number, boolean, array, object, set, null), type_name.

The `is_*` checks answer false (not undefined) for other types, as OPA does today.
"""

from __future__ import annotations

from collections.abc import Callable

from policy_engine.builtins.base import Builtin, builtin
from policy_engine.values import type_name

__all__ = ["BUILTINS"]


def _is(rego_type: str) -> Callable[[object], bool]:
    def check(x: object) -> bool:
        return type_name(x) == rego_type

    check.__name__ = f"is_{rego_type}"
    return check


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "is_string",
        _is("string"),
        "(x: any) -> boolean",
        'is_string("a")',
        doc="Whether the value is a string.",
    ),
    builtin(
        "is_number",
        _is("number"),
        "(x: any) -> boolean",
        "is_number(1)",
        doc="Whether the value is a number.",
    ),
    builtin(
        "is_boolean",
        _is("boolean"),
        "(x: any) -> boolean",
        "is_boolean(true)",
        doc="Whether the value is a boolean.",
    ),
    builtin(
        "is_array",
        _is("array"),
        "(x: any) -> boolean",
        "is_array([1])",
        doc="Whether the value is an array.",
    ),
    builtin(
        "is_object",
        _is("object"),
        "(x: any) -> boolean",
        "is_object({})",
        doc="Whether the value is an object.",
    ),
    builtin(
        "is_set",
        _is("set"),
        "(x: any) -> boolean",
        "is_set(set())",
        doc="Whether the value is a set.",
    ),
    builtin(
        "is_null",
        _is("null"),
        "(x: any) -> boolean",
        "is_null(null)",
        doc="Whether the value is null.",
    ),
    builtin("type_name", type_name, "(x: any) -> string", "type_name([1])"),
)
