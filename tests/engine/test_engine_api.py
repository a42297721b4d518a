"""The public API of issue 2 point 7: loading, querying, preparing, errors, limits."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine import UNDEFINED, Engine, EngineConfig, EvalError, PolicyError
from policy_engine.engine import public_value
from policy_engine.values import FrozenDict, thaw

POLICY = """package app
import rego.v1

default allow := false

allow if {
	input.user.role == "admin"
}

nothing := null

limit := data.limits[input.user.name]

total := input.a + input.b
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_sources({"app.rego": POLICY}, data={"limits": {"ann": 5}})


def test_query_returns_bindings(engine: Engine) -> None:
    rows = engine.query("data.app.allow = x", input={"user": {"role": "admin"}})
    assert rows == [{"x": True}]


def test_query_undefined_is_empty(engine: Engine) -> None:
    assert engine.query("data.app.limit = x", input={"user": {"name": "bob"}}) == []


def test_prepared_query_gives_value_or_undefined(engine: Engine) -> None:
    limit = engine.prepare("data.app.limit")
    assert limit({"user": {"name": "ann"}}) == 5
    assert limit({"user": {"name": "bob"}}) is UNDEFINED


def test_prepared_null_is_not_undefined(engine: Engine) -> None:
    assert engine.prepare("data.app.nothing")({}) is None


def test_prepared_data_overrides_replace_top_level_keys(engine: Engine) -> None:
    limit = engine.prepare("data.app.limit")
    assert limit({"user": {"name": "bob"}}, data={"limits": {"bob": 7}}) == 7


def test_floats_are_exact_decimals(engine: Engine) -> None:
    total = engine.prepare("data.app.total")({"a": 0.1, "b": 0.2})
    assert total == Decimal("0.3")
    assert isinstance(total, Decimal)


def test_results_use_public_types() -> None:
    engine = Engine.from_sources({"t.rego": "package t\np := {'a': [1, {2}]}".replace("'", '"')})
    value = engine.prepare("data.t.p")({})
    assert value == {"a": [1, frozenset({2})]}
    assert type(value["a"]) is list


def test_conflict_raises_eval_error() -> None:
    engine = Engine.from_sources({"c.rego": "package c\np := 1\np := 2\n"})
    with pytest.raises(EvalError) as caught:
        engine.prepare("data.c.p")({})
    assert caught.value.code == "eval_conflict_error"
    assert "c.rego:2:1" in str(caught.value)


def test_strict_mode_raises_builtin_errors() -> None:
    sources = {"d.rego": "package d\np := 1 / input.n\n"}
    assert Engine.from_sources(sources).prepare("data.d.p")({"n": 0}) is UNDEFINED
    strict = Engine.from_sources(sources, config=EngineConfig(strict=True))
    with pytest.raises(EvalError) as caught:
        strict.prepare("data.d.p")({"n": 0})
    assert caught.value.code == "eval_builtin_error"


def test_step_limit() -> None:
    policy = "package s\nimport rego.v1\nn := count([x | some x in numbers.range(1, 5000)])\n"
    engine = Engine.from_sources({"s.rego": policy}, config=EngineConfig(max_steps=1000))
    with pytest.raises(EvalError) as caught:
        engine.prepare("data.s.n")({})
    assert caught.value.code == "eval_limit_error"
    assert Engine.from_sources({"s.rego": policy}).prepare("data.s.n")({}) == 5000


def test_policy_size_limit() -> None:
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources(
            {"big.rego": "package big\n" + "# x\n" * 100}, config=EngineConfig(max_policy_bytes=50)
        )
    assert "max_policy_bytes" in str(caught.value)


def test_policy_error_lists_every_problem() -> None:
    sources = {"a.rego": "package a\np := y\n", "b.rego": "package b\nq := nosuch(1)\n"}
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources(sources)
    found = [(d.file, d.line, d.column, d.code) for d in caught.value.diagnostics]
    assert found == [("a.rego", 2, 6, "rego_unsafe_var_error"), ("b.rego", 2, 6, "rego_type_error")]
    assert caught.value.render().startswith("a.rego:2:6: rego_unsafe_var_error: var `y` is unsafe")


def test_from_paths_reads_directories_non_recursively(tmp_path: Path) -> None:
    (tmp_path / "a.rego").write_text("package a\np := 1\n", encoding="utf-8")
    (tmp_path / "ignored.txt").write_text("package nope\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.rego").write_text("package b\nq := 2\n", encoding="utf-8")
    engine = Engine.from_paths([tmp_path])
    assert engine.rule_paths == ["data.a.p"]
    both = Engine.from_paths([tmp_path, tmp_path / "sub" / "b.rego"])
    assert both.rule_paths == ["data.a.p", "data.b.q"]


def test_from_paths_loads_iam_yaml(tmp_path: Path) -> None:
    policy = """rule_sets:
  - applies_to: {key: k1}
    rules:
      - id: r1
        deny_models: [gpt-4*]
"""
    (tmp_path / "keys.iam.yaml").write_text(policy, encoding="utf-8")
    engine = Engine.from_paths([tmp_path])
    rules = engine.prepare("data.gateway.iam_policies.rules")({"key": {"id": "k1"}})
    assert isinstance(rules, frozenset) and len(rules) == 1


def test_missing_path_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        Engine.from_paths([tmp_path / "nope"])
    assert "no policy file or directory" in str(caught.value)


def test_prepare_rejects_non_references(engine: Engine) -> None:
    with pytest.raises(PolicyError):
        engine.prepare("x := 1")


def test_queries_from_many_threads_agree(engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def ask(n: int) -> list[dict[str, object]]:
        return engine.query(f"x := {n} + 1; data.app.allow = y", input={"user": {"role": "dev"}})

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(ask, range(40)))
    assert results == [[{"x": n + 1, "y": False}] for n in range(40)]


def test_repeated_queries_do_not_grow_the_compiler(engine: Engine) -> None:
    engine.query("x := 1 + 2")
    before = len(engine._compiler.known_ids())
    for n in range(50):
        assert engine.query(f"x := {n} + 2") == [{"x": n + 2}]
    assert len(engine._compiler.known_ids()) == before


@pytest.mark.parametrize(
    "deep",
    [
        "[" * 3000 + "1" + "]" * 3000,
        "+".join(["1"] * 3000),  # flat text, but a 3,000-deep tree of `+`
        '{"a": ' * 3000 + "1" + "}" * 3000,
    ],
    ids=["arrays", "operators", "objects"],
)
def test_very_deep_nesting_is_a_policy_error(deep: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources({"deep.rego": "package p\nx := " + deep})
    assert "nest too deeply" in str(caught.value)
    engine = Engine.from_sources({"p.rego": "package p\nx := 1\n"})
    with pytest.raises(PolicyError) as caught:
        engine.query("y := " + deep)
    assert "nest too deeply" in str(caught.value)
    assert engine.query("y := data.p.x + 1") == [{"y": 2}]


def _shape(value: object) -> object:
    """The value with every container's exact type spelled out, to compare types deeply."""
    if isinstance(value, dict):
        return (type(value), {key: _shape(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return (type(value), [_shape(item) for item in value])
    return (type(value), value)


_frozen_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.decimals(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3).map(FrozenDict)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(_frozen_values)
def test_public_value_is_thaw_and_never_the_engines_object(value: object) -> None:
    public = public_value(value)
    assert _shape(public) == _shape(thaw(value))
    if isinstance(value, dict):
        assert public is not value
