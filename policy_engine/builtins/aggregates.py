"""Aggregate built-ins: count, sum, product, max, min, sort."""

from __future__ import annotations

from typing import Any

from policy_engine.builtins.arithmetic import add, multiply
from policy_engine.builtins.base import (
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    Number,
    builtin,
    operand_error,
    want_collection,
    want_number,
)
from policy_engine.values import UNDEFINED, is_number, sort_key, type_name

__all__ = ["BUILTINS"]


def count(collection: object) -> int:
    """Elements of an array, set or object; characters (code points) of a string."""
    if isinstance(collection, (str, tuple, list, dict, frozenset)):
        return len(collection)
    raise operand_error("count", 1, "one of {array, object, set, string}", collection)


def _numbers(name: str, collection: object) -> list[Number]:
    items = list(want_collection(name, 1, collection))
    for item in items:
        if not is_number(item):
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f"{name}: operand 1 must be one of {{set, array}} of numbers "
                f"but got {type_name(collection)} containing {type_name(item)}",
            )
    return [want_number(name, 1, item) for item in items]


def total(collection: object) -> Number:
    result: Number = 0
    for number in _numbers("sum", collection):
        result = add(result, number)
    return result


def product(collection: object) -> Number:
    result: Number = 1
    for number in _numbers("product", collection):
        result = multiply(result, number)
    return result


def maximum(collection: object) -> Any:
    """The greatest element in Rego's order; undefined for an empty collection."""
    items = list(want_collection("max", 1, collection))
    return max(items, key=sort_key) if items else UNDEFINED


def minimum(collection: object) -> Any:
    items = list(want_collection("min", 1, collection))
    return min(items, key=sort_key) if items else UNDEFINED


def sort(collection: object) -> tuple[Any, ...]:
    items = tuple(want_collection("sort", 1, collection))
    if len(items) < 2:
        # Nothing to order: no sort key is computed (a key walks a whole member).
        return items
    return tuple(sorted(items, key=sort_key))


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "count",
        count,
        "(collection: string | array[any] | object[any, any] | set[any]) -> number",
        "count([1, 2, 3])",
    ),
    builtin(
        "sum",
        total,
        "(collection: array[number] | set[number]) -> number",
        "sum([1, 2.5])",
        doc="The sum of an array or set of numbers.",
    ),
    builtin(
        "product",
        product,
        "(collection: array[number] | set[number]) -> number",
        "product([2, 3])",
        doc="The product of an array or set of numbers.",
    ),
    builtin("max", maximum, "(collection: array[any] | set[any]) -> any", "max([1, 3, 2])"),
    builtin(
        "min",
        minimum,
        "(collection: array[any] | set[any]) -> any",
        "min({1, 3, 2})",
        doc="The smallest element of an array or set.",
    ),
    builtin(
        "sort",
        sort,
        "(collection: array[any] | set[any]) -> array[any]",
        "sort({3, 1, 2})",
        doc="The elements of an array or set in ascending order.",
    ),
)
