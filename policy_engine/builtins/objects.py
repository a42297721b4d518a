"""Object built-ins: object.get, keys, union, union_n, remove, filter, subset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_engine.builtins.base import (
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_array,
    want_object,
)
from policy_engine.values import UNDEFINED, equal, freeze, type_name

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


def _listed_keys(name: str, keys: object) -> set[Any]:
    """Operand 2 of object.remove and object.filter: the keys listed in an array, a set,
    or the keys of an object."""
    if not isinstance(keys, (tuple, list, frozenset, dict)):
        raise operand_error(name, 2, "one of {object, set, array}", keys)
    return {freeze(key) for key in keys}


def remove(obj: object, to_remove: object) -> dict[Any, Any]:
    """obj without the keys listed in an array, a set, or the keys of an object."""
    mapping = want_object("object.remove", 1, obj)
    dropped = _listed_keys("object.remove", to_remove)
    return {key: value for key, value in mapping.items() if key not in dropped}


def union_n(objects: object) -> dict[Any, Any]:
    """object.union over an array of objects, left to right."""
    items = want_array("object.union_n", 1, objects)
    merged: dict[Any, Any] = {}
    for item in items:
        if not isinstance(item, dict):
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f"object.union_n: operand 1 must be array of objects but got "
                f"array containing {type_name(item)}",
            )
        merged = _merge(merged, item)
    return merged


def filter_keys(obj: object, to_keep: object) -> dict[Any, Any]:
    """obj with only the keys listed in an array, a set, or the keys of an object."""
    mapping = want_object("object.filter", 1, obj)
    kept = _listed_keys("object.filter", to_keep)
    return {key: value for key, value in mapping.items() if key in kept}


def subset(sup: object, sub: object) -> bool:
    """Whether `sub` is part of `sup`: objects recursively, sets by members, arrays contiguously."""
    if not isinstance(sup, (dict, frozenset, tuple, list)):
        raise operand_error("object.subset", 1, "one of {object, set, array}", sup)
    if not isinstance(sub, (dict, frozenset, tuple, list)):
        raise operand_error("object.subset", 2, "one of {object, set, array}", sub)
    return _subset(sup, sub)


def _subset(sup: Any, sub: Any) -> bool:
    if isinstance(sup, dict) and isinstance(sub, dict):
        for key, value in sub.items():
            found = _lookup(sup, key)
            if found is UNDEFINED or not _subset(found, value):
                return False
        return True
    if isinstance(sup, frozenset) and isinstance(sub, frozenset):
        return sub <= sup
    if isinstance(sup, (tuple, list)) and isinstance(sub, frozenset):
        return all(any(equal(member, item) for item in sup) for member in sub)
    if isinstance(sup, (tuple, list)) and isinstance(sub, (tuple, list)):
        width = len(sub)
        return any(
            all(equal(sup[start + i], sub[i]) for i in range(width))
            for start in range(len(sup) - width + 1)
        )
    return equal(sup, sub)


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "object.get",
        get,
        "(object: object[any, any], key: any, default: any) -> any",
        'object.get({"a": {"b": 1}}, ["a", "b"], 0)',
    ),
    builtin(
        "object.keys",
        keys,
        "(object: object[any, any]) -> set[any]",
        'object.keys({"a": 1, "b": 2})',
        doc="The set of an object's keys.",
    ),
    builtin(
        "object.union",
        union,
        "(a: object[any, any], b: object[any, any]) -> any",
        'object.union({"a": 1}, {"b": 2})',
    ),
    builtin(
        "object.remove",
        remove,
        "(object: object[any, any], keys: array[any] | set[any] | object[any, any])"
        " -> object[any, any]",
        'object.remove({"a": 1, "b": 2}, ["a"])',
    ),
    builtin(
        "object.union_n",
        union_n,
        "(objects: array[object[any, any]]) -> any",
        'object.union_n([{"a": 1}, {"b": 2}, {"a": 3}])',
    ),
    builtin(
        "object.filter",
        filter_keys,
        "(object: object[any, any], keys: array[any] | set[any] | object[any, any]) -> any",
        'object.filter({"a": 1, "b": 2}, ["a"])',
    ),
    builtin(
        "object.subset",
        subset,
        "(super: object[any, any] | set[any] | array[any], sub: object[any, any] | set[any]"
        " | array[any]) -> any",
        'object.subset({"a": 1, "b": {"c": 2}}, {"b": {"c": 2}})',
    ),
)
