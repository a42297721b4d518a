"""regex.match call sites keep the answers they worked out per (pattern, string),
bounded: the answers, errors and undefined results stay exactly the built-in's (the
closure engine of tooling.trace, which runs the built-in itself on every call, is the
reference), over repeats, over more pairs than a call site keeps, and for a pattern
that does not parse."""

from __future__ import annotations

import re
from typing import Any

import pytest

from policy_engine import Engine, EngineConfig, EvalError
from policy_engine.tooling.trace import traced_engine

POLICY = """package r

import rego.v1

shape := `^(19|20)[0-9]{2}-[0-9]{2}$`

fixed if regex.match(shape, input.s)

both if {
	regex.match(shape, input.s)
	regex.match(shape, input.t)
}

given if regex.match(input.p, input.s)

value := regex.match(input.p, input.s)
"""

RULES = ("fixed", "both", "given", "value")


def outcome(engine: Engine, rule: str, doc: Any) -> Any:
    try:
        return ("value", engine.prepare(f"data.r.{rule}")(doc))
    except EvalError as exc:
        return ("error", exc.code, exc.message)


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    # More distinct pairs than a call site keeps (256), then the first ones again.
    for round_ in range(2):
        for i in range(300):
            year = 1900 + i if i % 3 else 2300 + i
            docs.append({"s": f"{year}-{i % 100:02d}", "t": "2026-12", "p": f"^{year % 7}"})
        docs.append({"s": "x", "t": 1, "p": "[unclosed"})
        docs.append({"s": 5, "t": "2026-12", "p": "^5"})
        docs.append({"s": "abc", "p": None})
        docs.append({"p": "a"})
        docs.append({"s": "2026-12", "t": "2026-12", "p": "(?P<x>"})
        del round_
    return docs


@pytest.mark.parametrize("config", [EngineConfig(), EngineConfig(strict=True)], ids=["", "strict"])
def test_regex_match_answers_are_the_builtins_on_every_call(config: EngineConfig) -> None:
    fast = Engine.from_sources({"r.rego": POLICY}, config=config)
    reference, _tracer = traced_engine({"r.rego": POLICY}, config=config)
    for doc in documents():
        for rule in RULES:
            assert outcome(fast, rule, doc) == outcome(reference, rule, doc), (rule, doc)


def test_regex_match_answers_match_python_search() -> None:
    engine = Engine.from_sources({"r.rego": POLICY})
    value = engine.prepare("data.r.value")
    for doc in documents()[:300] * 2:
        assert value(doc) == (re.search(doc["p"], doc["s"]) is not None), doc


def test_a_pattern_that_does_not_parse_errs_on_every_call() -> None:
    engine = Engine.from_sources({"r.rego": POLICY}, config=EngineConfig(strict=True))
    value = engine.prepare("data.r.value")
    for _ in range(3):
        with pytest.raises(EvalError) as caught:
            value({"s": "x", "p": "[unclosed"})
        assert "error parsing regexp" in caught.value.message


def test_a_call_site_runs_the_builtin_once_per_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    from policy_engine.builtins import regex_glob

    searched: list[str] = []
    compile_regex = regex_glob._compile_regex

    def counted(pattern: str) -> re.Pattern[str]:
        searched.append(pattern)
        return compile_regex(pattern)

    monkeypatch.setattr(regex_glob, "_compile_regex", counted)
    fixed = Engine.from_sources({"r.rego": POLICY}).prepare("data.r.fixed")
    for _ in range(5):
        assert fixed({"s": "2026-12"}) is True
        assert fixed({"s": "2026-123"}) is not True
    assert len(searched) == 2
