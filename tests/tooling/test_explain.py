"""`eval --explain`: the trace of a decision, the deciding rule with its line; Python API.

The snapshots are checked in next to the fixture policy; after an intended
change of the output, regenerate them with `UPDATE_SNAPSHOTS=1 pytest tests/tooling`.
"""

from __future__ import annotations

import copy
import io
import json
import os
from contextlib import redirect_stdout
from typing import Any

import pytest
import yaml
from tooling_helpers import CATALOG, FIXTURES, GATEWAY_REGO, REPO

from policy_engine import Engine
from policy_engine.cli import main as policy_engine_main
from policy_engine.loader import read_policy_files
from policy_engine.tooling.explain import Explainer, render_explanation

EXPLAIN = FIXTURES / "explain"
# A request that passes every check (shared with the policy tests).
BASE_INPUT: dict[str, Any] = json.loads(
    (REPO / "tests" / "fixtures" / "allowed_request.json").read_text(encoding="utf-8")
)


def _eval_explain(mode: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with redirect_stdout(out):
        status = policy_engine_main(
            [
                "eval",
                "-d",
                str((EXPLAIN / "gate.rego").relative_to(REPO)),
                "-i",
                str((EXPLAIN / "denied.input.json").relative_to(REPO)),
                "--explain",
                mode,
                "data.fixtures.gate.decision",
            ]
        )
    assert status == 0
    return out.getvalue()


@pytest.mark.parametrize("mode", ["full", "notes", "fails"])
def test_explain_output_matches_the_snapshot(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    output = _eval_explain(mode, monkeypatch)
    snapshot = EXPLAIN / f"denied.{mode}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(output, encoding="utf-8")
    assert output == snapshot.read_text(encoding="utf-8")


def test_the_verdict_names_the_deciding_rule_and_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    output = _eval_explain("notes", monkeypatch)
    lines = (EXPLAIN / "gate.rego").read_text(encoding="utf-8").splitlines()
    clause_line = next(i for i, line in enumerate(lines, 1) if "model denied: " in line)
    rule_line = next(i for i, line in enumerate(lines, 1) if line.startswith("model_denied if"))
    where = "tests/fixtures/tooling/explain/gate.rego"
    assert f"decided by the clause at {where}:{clause_line}" in output
    reason = f"because data.fixtures.gate.model_denied = true ({where}:{rule_line})"
    assert reason in output
    assert 'denied: status 403, message "model denied: gpt-4"' in output


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    catalog = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    return Explainer.from_sources(read_policy_files([GATEWAY_REGO]), data={"catalog": catalog})


def test_gateway_denial_names_the_else_clause_and_the_rule_behind_it(explainer: Explainer) -> None:
    document = copy.deepcopy(BASE_INPUT)
    document["key"]["usage"] = "10"
    document["key"]["usage_limit"] = "10.00"
    explanation = explainer.explain("data.gateway.decision", document)
    lines = GATEWAY_REGO.read_text(encoding="utf-8").splitlines()
    clause_line = next(i for i, text in enumerate(lines, 1) if "reached its usage limit" in text)
    rule_line = next(
        i for i, text in enumerate(lines, 1) if text.startswith("usage_limit_reached if")
    )
    assert explanation.verdict is not None
    assert explanation.verdict.line == clause_line
    assert next((r.rule, r.line) for r in explanation.verdict.reasons) == (
        "data.gateway.usage_limit_reached",
        rule_line,
    )
    notes = render_explanation(explanation, "notes")
    assert f"{GATEWAY_REGO}:{clause_line}" in notes or f"gateway.rego:{clause_line}" in notes
    assert "denied: status 401" in notes


def test_fails_mode_lists_only_failed_steps(explainer: Explainer) -> None:
    document = copy.deepcopy(BASE_INPUT)
    document["request"]["token_present"] = False
    text = render_explanation(explainer.explain("data.gateway.decision", document), "fails")
    steps = [line for line in text.splitlines() if ": " in line and "| " in line]
    assert steps == []  # check 1 answers at once: nothing before it failed
    document["request"]["token_present"] = True
    document["key"] = None
    text = render_explanation(explainer.explain("data.gateway.decision", document), "fails")
    assert "Fail not input.request.token_present" in text
    assert "Enter" not in text and "Eval" not in text


def test_unknown_mode_is_refused(explainer: Explainer) -> None:
    with pytest.raises(ValueError, match="unknown explain mode"):
        render_explanation(explainer.explain("data.gateway.decision", BASE_INPUT), "all")


@pytest.mark.parametrize(
    "patch",
    [
        {},
        {"request": {"token_present": False}},
        {"key": {"status": "deleted"}},
        {"request": {"model": "openrouter/gpt-4"}},
        {"request": {"operation": "models.list", "model": None}},
        {"project": {"mode": "credits"}, "organization": {"credits": "0"}},
        {
            "key": {
                "iam_rules": [
                    {"id": "r", "type": "deny_models", "values": ["gpt-*"], "status": "active"}
                ]
            }
        },
    ],
)
def test_tracing_gives_the_same_decision_as_the_normal_engine(
    explainer: Explainer, patch: dict[str, Any]
) -> None:
    document = copy.deepcopy(BASE_INPUT)
    for part, fields in patch.items():
        document[part].update(fields)
    catalog = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    plain = Engine.from_paths([GATEWAY_REGO], data={"catalog": catalog}).prepare(
        "data.gateway.decision"
    )
    explained = explainer.explain("data.gateway.decision", document)
    assert explained.value == plain(document)
    assert json.dumps(explained.value, default=str)


def test_explain_of_a_query_reports_its_result(explainer: Explainer) -> None:
    explanation = explainer.explain("x := data.gateway.decision.status", BASE_INPUT)
    assert explanation.value == [{"x": 200}]
    assert explanation.verdict is not None
    assert explanation.verdict.rule == "data.gateway.decision"
