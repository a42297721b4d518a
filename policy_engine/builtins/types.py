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
    builtin("is_string", _is("string"), 1),
    builtin("is_number", _is("number"), 1),
    builtin("is_boolean", _is("boolean"), 1),
    builtin("is_array", _is("array"), 1),
    builtin("is_object", _is("object"), 1),
    builtin("is_set", _is("set"), 1),
    builtin("is_null", _is("null"), 1),
    builtin("type_name", type_name, 1),
)
