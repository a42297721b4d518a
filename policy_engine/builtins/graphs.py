"""Graph built-ins: graph.reachable, graph.reachable_paths, walk's helper.

A graph is an object from node to its neighbours (an array or a set).
Nodes missing from the graph and malformed neighbour lists are skipped, as OPA does.
"""

from __future__ import annotations

from typing import Any, Final

from policy_engine.builtins.base import Builtin, builtin, operand_error, want_object
from policy_engine.values import freeze, sort_key

__all__ = ["BUILTINS"]


def _nodes(name: str, position: int, value: object) -> list[Any]:
    if isinstance(value, frozenset):
        return sorted(value, key=sort_key)
    if isinstance(value, (tuple, list)):
        return list(value)
    raise operand_error(name, position, "one of {set, array}", value)


_ABSENT: Final = object()


def _neighbours(graph: Any, node: Any) -> Any:
    """The node's neighbours in order; `_ABSENT` when the node is not in the graph.

    A node whose entry is not an array or set (null, say) has none.
    """
    edges = graph.get(freeze(node), _ABSENT)
    if edges is _ABSENT:
        return _ABSENT
    if isinstance(edges, frozenset):
        return sorted(edges, key=sort_key)
    if isinstance(edges, (tuple, list)):
        return list(edges)
    return []


def reachable(graph: object, initial: object) -> frozenset[Any]:
    """Every node reachable from the initial nodes, the initial nodes included."""
    edges = want_object("graph.reachable", 1, graph)
    pending = _nodes("graph.reachable", 2, initial)
    seen: set[Any] = set()
    while pending:
        node = freeze(pending.pop())
        if node in seen:
            continue
        neighbours = _neighbours(edges, node)
        if neighbours is _ABSENT:
            continue
        seen.add(node)
        pending.extend(neighbours)
    return frozenset(seen)


def reachable_paths(graph: object, initial: object) -> frozenset[Any]:
    """Every path from an initial node until a node with no way further or a cycle."""
    edges = want_object("graph.reachable_paths", 1, graph)
    paths: set[tuple[Any, ...]] = set()
    for root in _nodes("graph.reachable_paths", 2, initial):
        node = freeze(root)
        neighbours = _neighbours(edges, node)
        if neighbours is _ABSENT:
            continue
        if not neighbours:
            paths.add((node,))
        for neighbour in neighbours:
            _paths_from(edges, freeze(neighbour), (node,), paths, frozenset({node}))
    return frozenset(paths)


def _paths_from(
    graph: Any,
    node: Any,
    path: tuple[Any, ...],
    paths: set[tuple[Any, ...]],
    on_path: frozenset[Any],
) -> None:
    # A path ends before a node missing from the graph, at a node without
    # neighbours, and before a node already on it (a cycle).
    neighbours = _neighbours(graph, node)
    if neighbours is _ABSENT:
        paths.add(path)
        return
    path = (*path, node)
    if not neighbours:
        paths.add(path)
        return
    on_path = on_path | {node}
    for neighbour in neighbours:
        neighbour = freeze(neighbour)
        if neighbour in on_path:
            paths.add(path)
        else:
            _paths_from(graph, neighbour, path, paths, on_path)


_GRAPH = "object[any, array[any] | set[any]]"

BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "graph.reachable",
        reachable,
        f"(graph: {_GRAPH}, initial: array[any] | set[any]) -> set[any]",
        'graph.reachable({"a": {"b"}, "b": {"c"}, "c": set()}, {"a"})',
    ),
    builtin(
        "graph.reachable_paths",
        reachable_paths,
        f"(graph: {_GRAPH}, initial: array[any] | set[any]) -> set[array[any]]",
        'graph.reachable_paths({"a": {"b"}, "b": set()}, {"a"})',
    ),
)
