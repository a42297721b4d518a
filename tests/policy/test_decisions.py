"""The default policy against the contract: one parametrised runner over the YAML cases.

Each case in tests/policy/cases/*.yaml lays `input` over the base input (a request
that passes every check), optionally adds policy files (`policies: {name: text}`),
and compares the fields of `want` with the decision exactly.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import msgspec
import pytest
from policy_harness import CASES_DIR, build_input, decide, engine_with, load_cases, schema

CASES = load_cases(CASES_DIR.glob("*.yaml"))
CASE_KEYS = {"note", "input", "policies", "want", "_file"}


def _reason_dicts(value: Any) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(reason) for reason in value]


@pytest.mark.parametrize("case", CASES, ids=[case["note"] for case in CASES])
def test_decision(case: dict[str, Any]) -> None:
    assert set(case) <= CASE_KEYS, f"unknown case fields: {set(case) - CASE_KEYS}"
    document = build_input(case.get("input"))
    jsonschema.validate(document, schema("input.schema.json"))

    decision = decide(engine_with(case.get("policies")), document)

    jsonschema.validate(json.loads(msgspec.json.encode(decision)), schema("decision.schema.json"))
    for field, expected in case["want"].items():
        actual = getattr(decision, field)
        if field == "reasons":
            actual = _reason_dicts(actual)
        elif field == "models" and actual is not None:
            actual = list(actual)
        assert actual == expected, f"{field}: {actual!r} != {expected!r}"
    # A denial names no provider; an allowed request always does (except the model list).
    if not decision.allow:
        assert decision.provider is None and decision.billing is None
        assert decision.status != 200 and decision.message
    elif document["request"]["operation"] != "models.list":
        assert decision.provider is not None and decision.billing is not None


def test_the_corpus_covers_every_documented_message() -> None:
    """Every exact string of the contract appears in some case's expected message."""
    messages = {case["want"].get("message") for case in CASES}
    documented_prefixes = [
        "Unauthorized: No API key provided.",
        "Unauthorized: Invalid LLMGateway API token.",
        "Unauthorized: LLMGateway API key reached its usage limit.",
        "Project has been archived and is no longer accessible",
        "Unsupported model: ",
        "Access denied: Model gpt-4 is not in the allowed models list",
        "Access denied: Model gpt-4 is in the denied models list",
        "Access denied: Operation chat.completions is not in the allowed operations list",
        "Access denied: Operation chat.completions is in the denied operations list",
        "Access denied: Provider openai is not in the allowed providers list",
        "Access denied: Provider openai is in the denied providers list",
        "Access denied: No providers are allowed for model gpt-4 after applying IAM rules.",
        "No provider key set for any of the providers that support model gpt-4.",
        "Organization org_acme has insufficient credits",
        "No available provider could be found for model claude-sonnet-4",
        "No API key set for provider and organization has insufficient credits",
    ]
    for prefix in documented_prefixes:
        assert any(m and m.startswith(prefix) for m in messages), prefix
