"""Property tests at the seams: the parser never leaks lark errors, the AST
round-trips through msgspec, and a prepared query agrees with a fresh query."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

from policy_engine import UNDEFINED, Engine, PolicyError
from policy_engine import ast as policy_ast
from policy_engine.parse_layout import KEYWORDS
from policy_engine.parser import parse_module, parse_query

GRAMMAR = files("policy_engine").joinpath("grammar.lark").read_text(encoding="utf-8")
# The generator needs a plain lark grammar object; the engine's own parser stays private.
GENERATOR_GRAMMAR = Lark(GRAMMAR, parser="lalr", lexer="contextual", start=["module", "query"])
# lark's generator concatenates tokens; pad words so `package` and a name stay apart,
# and keep comments on their own line so they do not swallow the rest of the text.
SEPARATORS = {
    "_SEP": st.sampled_from(["\n", "; "]),
    "LBODY": st.just("{"),
    "NAME": st.from_regex(r"[a-z_][a-z0-9_]{0,4}", fullmatch=True).map(lambda n: f" {n} "),
    "NUMBER": st.from_regex(r"(0|[1-9][0-9]{0,3})(\.[0-9]{1,2})?", fullmatch=True).map(
        lambda n: f" {n} "
    ),
    "COMMENT": st.just("# comment\n"),
    **{token: st.just(f" {word} ") for word, token in KEYWORDS.items()},
}
# Moderate by default so the suite stays fast; POLICY_ENGINE_EXAMPLES=2000 digs deeper.
SETTINGS = settings(
    max_examples=int(os.environ.get("POLICY_ENGINE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _parses_or_reports(text: str, as_query: bool) -> None:
    try:
        if as_query:
            parse_query(text)
        else:
            parse_module(text, "generated.rego")
    except PolicyError as exc:
        assert exc.code == "rego_parse_error"
        assert all(d.code == "rego_parse_error" and d.line >= 0 for d in exc.diagnostics)


@SETTINGS
@given(from_lark(GENERATOR_GRAMMAR, start="module", explicit=SEPARATORS))
def test_grammar_modules_parse_or_raise_parse_error(text: str) -> None:
    _parses_or_reports(text, as_query=False)
    # The rules after the package line are grammar-shaped text for the query
    # parser too (drawing from the `query` start directly is very slow).
    rest = text.partition("\n")[2]
    if rest.strip() and not rest.lstrip().startswith("package"):
        _parses_or_reports(rest, as_query=True)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    text = data.decode("latin-1")
    _parses_or_reports("package p\n" + text, as_query=False)
    if text.strip() and not text.lstrip().startswith("package"):
        _parses_or_reports(text, as_query=True)


@SETTINGS
@given(from_lark(GENERATOR_GRAMMAR, start="module", explicit=SEPARATORS))
def test_ast_round_trips_through_json(text: str) -> None:
    try:
        module = parse_module(text, "generated.rego")
    except PolicyError:
        return
    encoded = msgspec.json.encode(module)
    assert msgspec.json.decode(encoded, type=policy_ast.Module) == module


POLICY = """package t
import rego.v1

default allow := false

allow if {
	input.user.role == "admin"
}

allow if {
	some grant in input.grants
	grant.action == input.action
	count(grant.scopes) > 0
}

tags contains tag if {
	some tag in input.tags
	is_string(tag)
}

summary := {"allow": allow, "tags": tags, "n": count(object.keys(input))} if is_object(input)
"""
ENGINE = Engine.from_sources({"t.rego": POLICY})
PREPARED = ENGINE.prepare("data.t.summary")

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False, width=32),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
INPUTS = (
    st.fixed_dictionaries(
        {},
        optional={
            "user": st.fixed_dictionaries(
                {}, optional={"role": st.sampled_from(["admin", "dev"]) | JSON}
            ),
            "grants": st.lists(
                st.fixed_dictionaries(
                    {"action": st.sampled_from(["read", "write"]), "scopes": JSON}
                ),
                max_size=3,
            )
            | JSON,
            "action": st.sampled_from(["read", "write"]) | JSON,
            "tags": JSON,
        },
    )
    | JSON
)


@SETTINGS
@given(INPUTS)
def test_prepared_query_matches_fresh_query(document: Any) -> None:
    fresh = ENGINE.query("x = data.t.summary", input=document)
    prepared = PREPARED(document)
    if not fresh:
        assert prepared is UNDEFINED
    else:
        assert fresh == [{"x": prepared}]


def _load_bench() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "engine_bench.py"
    spec = importlib.util.spec_from_file_location("engine_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _load_bench()
GATEWAY = Engine.from_sources({"gateway.rego": BENCH.POLICY}).prepare("data.gateway.decision")
MODEL_NAMES = st.sampled_from(
    ["gpt-4", "gpt-4-turbo", "gpt-4o-mini", "o1-preview", "claude-3-opus", "mock-model",
     "llama-3.1", "text-embedding-ada-002", "unknown", "openai/gpt-4", "azure/gpt-4", ""]
)  # fmt: skip
MONEY = st.decimals(min_value=0, max_value=2000, places=2).map(str)


@SETTINGS
@given(
    model=MODEL_NAMES,
    status=st.sampled_from(["active", "inactive", "deleted"]),
    usage=MONEY,
    limit=st.none() | MONEY,
    operation=st.sampled_from(["chat.completions", "completions", "embeddings", "images"]),
    providers=st.lists(st.sampled_from(["mock", "openai", "azure"]), unique=True),
)
def test_gateway_policy_agrees_with_hand_written_logic(
    model: str, status: str, usage: str, limit: str | None, operation: str, providers: list[str]
) -> None:
    document = BENCH.make_input(model, status=status, usage=usage)
    document["key"]["usage_limit"] = limit
    document["request"]["operation"] = operation
    document["gateway"]["credentialed_providers"] = providers
    assert GATEWAY(document) == BENCH.hand_written(document)
