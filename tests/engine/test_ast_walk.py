"""`ast.walk` visits what a plain recursive walk over the structs visits, in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from policy_engine import ast
from policy_engine.parser import parse_module
from policy_engine.source import Span

POLICIES = sorted((Path(__file__).resolve().parents[2] / "policies").rglob("*.rego"))

SAMPLE = """package p

import rego.v1

f(x, [y, _]) := {k: v | some k, v in x; v > y} if true
else := 0

r[input.a][b].c contains {"n": -n} if {
    some b in data.q
    n := count([z | z := input.xs[_]; not z in {1, 2}]) with input.xs as [3]
    every i, j in [1] { i < j }
}
"""


def _recursive(node: object, ref_heads: bool) -> Iterator[object]:
    if isinstance(node, tuple):
        for item in node:
            yield from _recursive(item, ref_heads)
        return
    if not isinstance(node, msgspec.Struct) or isinstance(node, Span):
        return
    yield node
    for name in node.__struct_fields__:
        if name == "span":
            continue
        head_var = isinstance(node, ast.Ref) and isinstance(node.head, ast.Var)
        if name == "head" and head_var and not ref_heads:
            continue
        yield from _recursive(getattr(node, name), ref_heads)


def test_every_node_class_has_its_fields() -> None:
    for name in ast.__all__:
        kind = getattr(ast, name)
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            assert kind in ast.CHILD_FIELDS, name
            assert set(ast.CHILD_FIELDS[kind]) == set(kind.__struct_fields__) - {"span"}


@pytest.mark.parametrize("ref_heads", [True, False])
@pytest.mark.parametrize("path", [None, *POLICIES], ids=lambda p: p.name if p else "sample")
def test_walk_matches_a_recursive_walk(path: Path | None, ref_heads: bool) -> None:
    module = parse_module(path.read_text(encoding="utf-8") if path else SAMPLE)
    walked = list(ast.walk(module, ref_heads=ref_heads))
    expected = list(_recursive(module, ref_heads))
    assert [id(n) for n in walked] == [id(n) for n in expected]
    assert any(isinstance(n, ast.Literal) and n.withs for n in walked) or path is not None
    heads = [n.head for n in walked if isinstance(n, ast.Ref) and isinstance(n.head, ast.Var)]
    assert heads
    assert all(any(h is n for n in walked) == ref_heads for h in heads)
