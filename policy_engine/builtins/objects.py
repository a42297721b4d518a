"""Object built-ins: object.get, object.keys, object.union, object.remove."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_engine.builtins.base import Builtin, builtin, operand_error, want_object
from policy_engine.values import UNDEFINED, freeze

__all__ = ["BUILTINS"]


def get(obj: object, key: object, default: object) -> Any:
    """obj[key], or `default`; an array key is a path walked through objects, arrays and sets."""
    mapping = want_object("object.get", 1, obj)
    if type(key) is str:  # the common case, no freezing needed
        return mapping.get(key, default)
    if isinstance(key, (tuple, list)):
        return _walk(mapping, key, default)
    found = _lookup(mapping, key)
    return default if found is UNDEFINED else found


def _lookup(container: object, key: object) -> Any:
    if isinstance(container, dict):
        return container.get(key if type(key) is str else freeze(key), UNDEFINED)
    if isinstance(container, (tuple, list)) and type(key) is int and 0 <= key < len(container):
        return container[key]
    if isinstance(container, frozenset):
        member = freeze(key)
        return member if member in container else UNDEFINED
    return UNDEFINED


def _walk(container: object, path: tuple[Any, ...] | list[Any], default: object) -> Any:
    for step in path:
        container = _lookup(container, step)
        if container is UNDEFINED:
            return default
    return container


def keys(obj: object) -> frozenset[Any]:
    return frozenset(freeze(key) for key in want_object("object.keys", 1, obj))


def union(a: object, b: object) -> dict[Any, Any]:
    """Merge b into a; where both hold an object under one key, merge those too."""
    return _merge(want_object("object.union", 1, a), want_object("object.union", 2, b))


def _merge(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> dict[Any, Any]:
    merged = dict(a)
    for key, value in b.items():
        old = merged.get(key, UNDEFINED)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value)
        else:
            merged[key] = value
    return merged


def remove(obj: object, to_remove: object) -> dict[Any, Any]:
    """obj without the keys listed in an array, a set, or the keys of an object."""
    mapping = want_object("object.remove", 1, obj)
    if not isinstance(to_remove, (tuple, list, frozenset, dict)):
        raise operand_error("object.remove", 2, "one of {object, set, array}", to_remove)
    dropped = {freeze(key) for key in to_remove}
    return {key: value for key, value in mapping.items() if key not in dropped}


BUILTINS: tuple[Builtin, ...] = (
    builtin("object.get", get, 3),
    builtin("object.keys", keys, 1),
    builtin("object.union", union, 2),
    builtin("object.remove", remove, 2),
)
