"""Built-ins that edit documents by path: json.filter, json.remove, json.patch (RFC 6902).

Paths are strings `"a/b/0"` (JSON-pointer-like, a leading `/` optional) or
arrays of segments `["a", "b", 0]`. An array element is addressed by its
index, as a number or as its decimal text.
"""

from __future__ import annotations

from collections.abc import Iterable
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
from policy_engine.values import UNDEFINED, equal, freeze, sort_key, type_name

__all__ = ["BUILTINS"]

# A path tree: segment -> subtree, or None where a path ends (everything below is meant).
_Tree = dict[Any, "_Tree | None"]


def _segments(name: str, path: object) -> tuple[Any, ...]:
    if isinstance(path, str):
        text = path[1:] if path.startswith("/") else path
        return tuple(_unescape(part) for part in text.split("/")) if text else ()
    if isinstance(path, (tuple, list)):
        return tuple(freeze(part) for part in path)
    raise BuiltinError(
        EVAL_TYPE_ERROR,
        f"{name}: operand 2 must be one of {{set, array}} containing string paths or array "
        f"of path segments but got {type_name(path)}",
    )


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def _tree(name: str, paths: object) -> _Tree:
    if not isinstance(paths, (tuple, list, frozenset)):
        raise operand_error(name, 2, "one of {set, array}", paths)
    items: Iterable[Any] = sorted(paths, key=sort_key) if isinstance(paths, frozenset) else paths
    root: _Tree = {}
    for path in items:
        segments = _segments(name, path)
        if not segments:
            continue
        node = root
        for segment in segments[:-1]:
            child = node.setdefault(segment, {})
            if child is None:
                break  # a shorter path already covers this one
            node = child
        else:
            node[segments[-1]] = None
    return root


_MISSING = object()


def _child(node: _Tree, key: Any) -> Any:
    """The subtree for an object key or array index (an index also matches its text);
    `_MISSING` when no path goes there, None when a path ends there."""
    if key in node:
        return node[key]
    if type(key) is int and str(key) in node:
        return node[str(key)]
    return _MISSING


def _keep(value: Any, node: _Tree | None) -> Any:
    if node is None:
        return value
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            sub = _child(node, key)
            if sub is not _MISSING:
                kept[key] = _keep(item, sub)
        return kept
    if isinstance(value, (tuple, list)):
        return tuple(
            _keep(item, sub)
            for index, item in enumerate(value)
            if (sub := _child(node, index)) is not _MISSING
        )
    if isinstance(value, frozenset):
        return frozenset(member for member in value if _child(node, member) is not _MISSING)
    return value


def _drop(value: Any, node: _Tree) -> Any:
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            sub = _child(node, key)
            if sub is _MISSING:
                result[key] = item
            elif sub is not None:
                result[key] = _drop(item, sub)
        return result
    if isinstance(value, (tuple, list)):
        out: list[Any] = []
        for index, item in enumerate(value):
            sub = _child(node, index)
            if sub is _MISSING:
                out.append(item)
            elif sub is not None:
                out.append(_drop(item, sub))
        return tuple(out)
    if isinstance(value, frozenset):
        return frozenset(member for member in value if _child(node, member) is not None)
    return value


def json_filter(obj: object, paths: object) -> Any:
    """The object with only the given paths kept."""
    mapping = want_object("json.filter", 1, obj)
    return _keep(mapping, _tree("json.filter", paths))


def json_remove(obj: object, paths: object) -> Any:
    """The object with the given paths removed."""
    mapping = want_object("json.remove", 1, obj)
    return _drop(mapping, _tree("json.remove", paths))


# ---------------------------------------------------------------- json.patch


class _PatchFailed(Exception):
    """One operation cannot apply; json.patch is then undefined, as in OPA."""


def _pointer(path: Any) -> tuple[Any, ...]:
    if isinstance(path, str):
        if path == "":
            return ()
        if not path.startswith("/"):
            raise _PatchFailed
        return tuple(_unescape(part) for part in path[1:].split("/"))
    if isinstance(path, (tuple, list)):
        return tuple(path)
    raise _PatchFailed


def _index(container: Any, segment: Any, appending: bool) -> int:
    if segment == "-" and appending:
        return len(container)
    if isinstance(segment, str) and segment.isdigit() and (segment == "0" or segment[0] != "0"):
        index = int(segment)
    elif type(segment) is int:
        index = segment
    else:
        raise _PatchFailed
    if not 0 <= index <= len(container) - (0 if appending else 1):
        raise _PatchFailed
    return index


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for segment in path:
        if isinstance(doc, dict):
            if segment not in doc:
                raise _PatchFailed
            doc = doc[segment]
        elif isinstance(doc, (tuple, list)):
            doc = doc[_index(doc, segment, appending=False)]
        elif isinstance(doc, frozenset):
            member = freeze(segment)
            if member not in doc:
                raise _PatchFailed
            doc = member
        else:
            raise _PatchFailed
    return doc


def _change(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    """A copy of doc with `op` ("add", "remove", "replace") applied at path."""
    if not path:
        if op == "remove":
            raise _PatchFailed
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        if rest:
            if head not in doc:
                raise _PatchFailed
            return {**doc, head: _change(doc[head], rest, op, value)}
        if op != "add" and head not in doc:
            raise _PatchFailed
        if op == "remove":
            return {k: v for k, v in doc.items() if k != head}
        return {**doc, head: value}
    if isinstance(doc, (tuple, list)):
        items = list(doc)
        if rest:
            index = _index(items, head, appending=False)
            items[index] = _change(items[index], rest, op, value)
            return tuple(items)
        index = _index(items, head, appending=op == "add")
        if op == "add":
            items.insert(index, value)
        elif op == "remove":
            del items[index]
        else:
            items[index] = value
        return tuple(items)
    if isinstance(doc, frozenset) and not rest:
        member = freeze(value if op == "add" else head)
        if op == "add":
            return doc | {member}
        if freeze(head) not in doc:
            raise _PatchFailed
        return doc - {freeze(head)} | ({freeze(value)} if op == "replace" else set())
    raise _PatchFailed


def _apply(doc: Any, operation: Any) -> Any:
    if not isinstance(operation, dict):
        raise _PatchFailed
    op, path = operation.get("op"), operation.get("path", UNDEFINED)
    if path is UNDEFINED:
        raise _PatchFailed
    target = _pointer(path)
    if op in ("add", "replace"):
        if "value" not in operation:
            raise _PatchFailed
        return _change(doc, target, op, operation["value"])
    if op == "remove":
        return _change(doc, target, "remove", None)
    if op in ("move", "copy"):
        if "from" not in operation:
            raise _PatchFailed
        source = _pointer(operation["from"])
        value = _get(doc, source)
        if op == "move":
            if target[: len(source)] == source and target != source:
                raise _PatchFailed  # a value cannot move into itself
            doc = _change(doc, source, "remove", None)
        return _change(doc, target, "add", value)
    if op == "test":
        if "value" not in operation or not equal(_get(doc, target), operation["value"]):
            raise _PatchFailed
        return doc
    raise _PatchFailed


def json_patch(obj: object, patches: object) -> Any:
    """The document after applying RFC 6902 operations in order; undefined if one fails."""
    operations = want_array("json.patch", 2, patches)
    doc: Any = obj
    try:
        for operation in operations:
            doc = _apply(doc, operation)
    except _PatchFailed:
        return UNDEFINED
    return doc


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "json.filter",
        json_filter,
        "(object: object[any, any], paths: array[string | array[any]] | set[string"
        " | array[any]]) -> any",
        'json.filter({"a": {"b": 1, "c": 2}, "d": 3}, ["a/b"])',
    ),
    builtin(
        "json.remove",
        json_remove,
        "(object: object[any, any], paths: array[string | array[any]] | set[string"
        " | array[any]]) -> any",
        'json.remove({"a": {"b": 1, "c": 2}, "d": 3}, ["a/b", "d"])',
    ),
    builtin(
        "json.patch",
        json_patch,
        "(object: any, patches: array[object[string, any]]) -> any",
        'json.patch({"a": 1}, [{"op": "add", "path": "/b", "value": 2}])',
    ),
)
