"""Array built-ins: array.concat, array.slice."""

from __future__ import annotations

from typing import Any

from policy_engine.builtins.base import Builtin, builtin, want_array, want_integer

__all__ = ["BUILTINS"]


def concat(a: object, b: object) -> tuple[Any, ...]:
    return (*want_array("array.concat", 1, a), *want_array("array.concat", 2, b))


def slice_(array: object, start: object, stop: object) -> tuple[Any, ...]:
    """Elements from `start` up to (not including) `stop`, both clamped to the array."""
    items = want_array("array.slice", 1, array)
    first = max(want_integer("array.slice", 2, start), 0)
    last = min(want_integer("array.slice", 3, stop), len(items))
    return tuple(items[first:last]) if first < last else ()


BUILTINS: tuple[Builtin, ...] = (
    builtin("array.concat", concat, 2),
    builtin("array.slice", slice_, 3),
)
