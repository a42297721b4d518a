"""`policy-engine prop`: invariants of the default policy, counterexamples, replay, seeds."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from tooling_helpers import (
    CATALOG,
    FIXTURES,
    GATEWAY_REGO,
    INPUT_SCHEMA,
    POLICIES,
    Run,
    run_cli,
    run_cli_in_fresh_process,
)

from policy_engine.tooling.loading import read_document
from policy_engine.tooling.schema_strategy import DECIMAL_POOL, dictionary_of, schema_strategy

SCHEMA = read_document(INPUT_SCHEMA)
INCLUSIVE = "to_number(input.key.usage) >= to_number(input.key.usage_limit)"


@pytest.fixture(scope="module")
def broken_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default policy whose usage check is written with `>` (a bug)."""
    folder = tmp_path_factory.mktemp("broken")
    text = GATEWAY_REGO.read_text(encoding="utf-8")
    assert text.count(INCLUSIVE) == 1, "the usage check moved; update this test's substitution"
    (folder / "gateway.rego").write_text(text.replace(INCLUSIVE, INCLUSIVE.replace(">=", ">")))
    shutil.copy(POLICIES / "gateway_props.rego", folder)
    shutil.copy(CATALOG, folder)
    return folder


def _counterexample(run: Run) -> dict[str, Any]:
    start = run.out.index("{")
    end = run.out.rindex("}") + 1
    found: dict[str, Any] = json.loads(run.out[start:end])
    return found


@pytest.fixture(scope="module")
def first_run(broken_policies: Path) -> Run:
    database = broken_policies / "db"
    return run_cli_in_fresh_process(
        [
            "prop",
            str(broken_policies),
            "--input-schema",
            str(INPUT_SCHEMA),
            "--seed",
            "7",
            # Headroom: which example finds the tie depends on hypothesis' internal state,
            # which shifts with unrelated imports; the search stops at the first violation.
            "--max-examples",
            "3000",
            "--database",
            str(database),
        ]
    )


def test_broken_usage_check_is_caught_with_usage_equal_to_the_limit(first_run: Run) -> None:
    assert first_run.status == 1
    assert "FAIL data.gateway_props.prop_usage_at_limit" in first_run.out
    found = _counterexample(first_run)
    key = found["input"]["key"]
    assert key["status"] == "active"
    assert Decimal(key["usage"]) == Decimal(key["usage_limit"])
    assert (
        found["decision"]["message"] != "Unauthorized: LLMGateway API key reached its usage limit."
    )


def test_same_seed_finds_the_same_counterexample(
    broken_policies: Path, first_run: Run, tmp_path: Path
) -> None:
    again = run_cli_in_fresh_process(
        [
            "prop",
            str(broken_policies),
            "--input-schema",
            str(INPUT_SCHEMA),
            "--seed",
            "7",
            "--max-examples",
            "3000",
            "--database",
            str(tmp_path / "fresh"),
        ]
    )
    assert again.status == 1
    assert _counterexample(again) == _counterexample(first_run)


def test_saved_failure_is_replayed_first(broken_policies: Path, first_run: Run) -> None:
    database = broken_policies / "db"
    assert any(p.is_file() for p in database.rglob("*")), "no failing example was saved"
    replay = run_cli_in_fresh_process(
        [
            "prop",
            str(broken_policies),
            "--input-schema",
            str(INPUT_SCHEMA),
            "--seed",
            "12345",
            "--max-examples",
            "1",
            "--database",
            str(database),
        ]
    )
    assert replay.status == 1
    assert "a saved counterexample still fails" in replay.out
    assert _counterexample(replay)["input"] == _counterexample(first_run)["input"]


def test_a_deny_rule_that_never_applies_is_caught(tmp_path: Path) -> None:
    text = GATEWAY_REGO.read_text(encoding="utf-8")
    deny_rules = 'rule.type == "deny_models"]'
    assert text.count(deny_rules) == 1, "the deny rule list moved; update this substitution"
    (tmp_path / "gateway.rego").write_text(text.replace(deny_rules, 'rule.type == "deny_modelz"]'))
    shutil.copy(POLICIES / "gateway_props.rego", tmp_path)
    shutil.copy(CATALOG, tmp_path)
    result = run_cli_in_fresh_process(
        [
            "prop",
            str(tmp_path),
            "--input-schema",
            str(INPUT_SCHEMA),
            # Seed 3: which seed finds the planted bug within the examples shifts with
            # the policy's rules (seed 2 stopped finding it when gateway.rego gained the
            # policy-file budgets); seed 3 finds it (in 36 s on a loaded machine).
            "--seed",
            "3",
            # Headroom: hypothesis stops generating early on a loaded machine, and
            # this search stops at the first violation anyway.
            "--max-examples",
            "3000",
            "--database",
            str(tmp_path / "db"),
        ]
    )
    assert result.status == 1
    assert "FAIL data.gateway_props.prop_denied_model_is_never_allowed" in result.out
    found = _counterexample(result)
    assert found["decision"]["allow"] is True
    # The property reads the key's and the project's rules: either may carry the denial.
    rules = [*found["input"]["key"]["iam_rules"], *found["input"]["project"]["iam_rules"]]
    denying = [r for r in rules if r["type"] == "deny_models"]
    assert any(r.get("status", "active") == "active" for r in denying)


def test_shipped_policy_keeps_every_property_over_1000_inputs(tmp_path: Path) -> None:
    result = run_cli_in_fresh_process(
        [
            "prop",
            str(POLICIES),
            "--input-schema",
            str(INPUT_SCHEMA),
            "--max-examples",
            "1000",
            "--seed",
            "1",
            "--database",
            str(tmp_path),
        ]
    )
    assert result.status == 0, result.out
    assert result.out.startswith("16 properties hold over ")
    assert "prop_denied_model_is_never_allowed" in result.out
    assert "prop_rpm_is_never_exceeded" in result.out
    assert "prop_key_at_period_budget_is_never_allowed" in result.out
    assert "prop_project_at_period_budget_is_never_allowed" in result.out


def test_no_properties_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package p\n\nx := 1\n", encoding="utf-8")
    result = run_cli(
        [
            "prop",
            str(tmp_path),
            "--input-schema",
            str(INPUT_SCHEMA),
            "--database",
            str(tmp_path / "db"),
        ]
    )
    assert result.status == 1
    assert "no prop_* rules found" in result.out


_DICTIONARY = dictionary_of(
    [["gpt-4", "openai", "chat.completions"], {"catalog": {"mock-model": 1}}]
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema_strategy(SCHEMA, _DICTIONARY))
def test_generated_inputs_are_valid_under_the_input_schema(document: Any) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    key = document.get("key")
    if key is not None:
        Decimal(key["usage"])  # decimal strings parse exactly
        assert "iam_rules" in key  # optional with a default: always present


_SEED = {
    "request": {
        "operation": "chat.completions",
        "token_present": True,
        "model": "gpt-4",
        "time": "2026-11-27T10:00:00Z",
        "client_ip": "127.0.0.1",
    },
    "key": {"id": "k", "status": "active", "usage": "1", "project_id": "p", "iam_rules": []},
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema_strategy(SCHEMA, _DICTIONARY, seeds=[_SEED]))
def test_inputs_near_a_seed_are_valid_too(document: Any) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(document)


def test_dictionary_keeps_identifiers_and_drops_prose() -> None:
    words = dictionary_of([{"gpt-4": {"name": "GPT 4 by OpenAI", "url": "https://x.invalid/v1"}}])
    assert words == ["gpt-4", "name", "url"]  # keys are identifiers too
    assert "10" in DECIMAL_POOL and "10.00" in DECIMAL_POOL  # equal amounts, written two ways


NUMBERS = FIXTURES / "props"


def test_counterexample_is_shrunk_to_the_boundary(tmp_path: Path) -> None:
    result = run_cli_in_fresh_process(
        [
            "prop",
            str(NUMBERS),
            "--input-schema",
            str(NUMBERS / "numbers.schema.json"),
            "--seed",
            "1",
            "--database",
            str(tmp_path),
        ]
    )
    assert result.status == 1
    assert f"{NUMBERS / 'numbers.rego'}:9: FAIL data.fixtures.numbers.prop_n_is_small" in result.out
    assert _counterexample(result) == {"input": {"n": 1000}}  # no decision rule to show


def test_run_selects_properties(tmp_path: Path) -> None:
    result = run_cli(
        [
            "prop",
            str(NUMBERS),
            "--input-schema",
            str(NUMBERS / "numbers.schema.json"),
            "--run",
            "absolute",
            "--max-examples",
            "50",
            "--database",
            str(tmp_path),
        ]
    )
    assert result.status == 0
    assert result.out.startswith("1 property holds over ")
    assert "prop_n_is_small" not in result.out


_AMOUNTS = {
    "type": "object",
    "properties": {
        "usage": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"},
        "limit": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
    "required": ["usage", "limit", "code"],
}


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(schema_strategy(_AMOUNTS))
def test_decimal_patterns_get_amounts_other_patterns_their_language(document: Any) -> None:
    jsonschema.Draft202012Validator(_AMOUNTS).validate(document)
    Decimal(document["usage"])
    Decimal(document["limit"])


def test_decimal_patterns_produce_ties() -> None:
    from hypothesis import find

    def tied(d: dict[str, str]) -> bool:  # random digit strings are almost never equal
        return Decimal(d["usage"]) == Decimal(d["limit"]) != 0

    search = settings(max_examples=300, database=None, derandomize=True)
    assert tied(find(schema_strategy(_AMOUNTS), tied, settings=search))


def test_an_undefined_property_is_named_while_the_others_are_checked_together(
    tmp_path: Path,
) -> None:
    """Every property is first evaluated in one context (one array of their values);
    an undefined one makes that array undefined, and the property is still the one
    named, with the outcome `undefined`."""
    (tmp_path / "p.rego").write_text(
        "package fixtures.partly\n\nimport rego.v1\n\n"
        "prop_holds if input.n == input.n\n\n"
        "prop_needs_a_big_n if input.n > 5\n",
        encoding="utf-8",
    )
    result = run_cli(
        [
            "prop",
            str(tmp_path),
            "--input-schema",
            str(NUMBERS / "numbers.schema.json"),
            "--seed",
            "1",
            "--max-examples",
            "50",
            "--database",
            str(tmp_path / "db"),
        ]
    )
    assert result.status == 1
    assert "FAIL data.fixtures.partly.prop_needs_a_big_n does not hold (undefined)" in result.out
    assert "prop_holds" not in result.out.split("FAIL", 1)[1]
