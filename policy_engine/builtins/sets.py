"""Set built-ins: union and intersection of a set of sets."""

from __future__ import annotations

from typing import Any

from policy_engine.builtins.base import (
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    want_set,
)
from policy_engine.values import type_name

__all__ = ["BUILTINS"]


def _member_sets(name: str, sets: object) -> list[frozenset[Any]]:
    members = want_set(name, 1, sets)
    for member in members:
        if not isinstance(member, frozenset):
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f"{name}: operand 1 must be set of sets but got set containing {type_name(member)}",
            )
    return list(members)


def union(sets: object) -> frozenset[Any]:
    return frozenset().union(*_member_sets("union", sets))


def intersection(sets: object) -> frozenset[Any]:
    members = _member_sets("intersection", sets)
    if not members:
        return frozenset()
    return members[0].intersection(*members[1:])


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "union",
        union,
        "(xs: set[set[any]]) -> set[any]",
        "union({{1}, {2}})",
        doc="The union of a set of sets.",
    ),
    builtin(
        "intersection",
        intersection,
        "(xs: set[set[any]]) -> set[any]",
        "intersection({{1, 2}, {2, 3}})",
        doc="The intersection of a set of sets.",
    ),
)
