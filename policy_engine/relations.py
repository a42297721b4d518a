"""Built-in relations: calls that bind their last operand once per result.

OPA's `walk(x, [path, value])` is not a function but a relation: it succeeds once for
every node of `x` (itself included), binding its path from the root and its value.
The compiler turns `walk(x, out)` into an iteration over `walk_pairs(x)` matched
against `out` (see `BodyCompiler.relation`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from policy_engine.values import sort_key

__all__ = ["RELATIONS", "walk_pairs"]


def walk_pairs(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every `(path, node)` of `value`, pre-order; object keys and set members sorted."""
    yield (path, value)
    if isinstance(value, dict):
        for key in sorted(value, key=sort_key):
            yield from walk_pairs(value[key], (*path, key))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            yield from walk_pairs(item, (*path, position))
    elif isinstance(value, (set, frozenset)):
        for member in sorted(value, key=sort_key):
            yield from walk_pairs(member, (*path, member))


RELATIONS: Final = {"walk": walk_pairs}
"""Relation name -> generator of its results (each matched against the last operand)."""
