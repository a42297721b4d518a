"""Array built-ins: array.concat, array.slice, array.reverse, array.flatten."""

from __future__ import annotations

from typing import Any

from policy_engine.builtins.base import Builtin, builtin, want_array, want_int64

__all__ = ["BUILTINS"]


def concat(a: object, b: object) -> tuple[Any, ...]:
    return (*want_array("array.concat", 1, a), *want_array("array.concat", 2, b))


def slice_(array: object, start: object, stop: object) -> tuple[Any, ...]:
    """Elements from `start` up to (not including) `stop`, both clamped to the array."""
    items = want_array("array.slice", 1, array)
    first = max(want_int64("array.slice", 2, start), 0)
    last = min(want_int64("array.slice", 3, stop), len(items))
    return tuple(items[first:last]) if first < last else ()


def reverse(array: object) -> tuple[Any, ...]:
    """The array's elements in reverse order."""
    return tuple(reversed(want_array("array.reverse", 1, array)))


def flatten(array: object) -> tuple[Any, ...]:
    """The array with each element that is an array spliced in (one level deep)."""
    flat: list[Any] = []
    for item in want_array("array.flatten", 1, array):
        if isinstance(item, (tuple, list)):
            flat.extend(item)
        else:
            flat.append(item)
    return tuple(flat)


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "array.concat",
        concat,
        "(x: array[any], y: array[any]) -> array[any]",
        "array.concat([1], [2, 3])",
        doc="The elements of the first array followed by those of the second.",
    ),
    builtin(
        "array.slice",
        slice_,
        "(arr: array[any], start: number, stop: number) -> array[any]",
        "array.slice([1, 2, 3, 4], 1, 3)",
    ),
    builtin(
        "array.reverse", reverse, "(arr: array[any]) -> array[any]", "array.reverse([1, 2, 3])"
    ),
    builtin(
        "array.flatten", flatten, "(arr: array[any]) -> array[any]", "array.flatten([1, [2, [3]]])"
    ),
)
