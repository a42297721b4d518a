"""The custom-rule extension point, using the two examples of policies/README.md verbatim."""

from __future__ import annotations

import re
from typing import Any

import pytest
from policy_harness import POLICY_DIR, build_input, decide, engine_with

INTERNS_MESSAGE = "Access denied: max_tokens above 4096 is not allowed for project interns"
OFFICE_MESSAGE = (
    "Access denied: the gateway only serves requests during office hours (Mon-Fri 08:00-18:00 UTC)"
)


def readme_examples() -> dict[str, str]:
    """`file name -> Rego text` for every ```rego block of the README opening with `# file:`."""
    text = (POLICY_DIR / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```rego\n(.*?)```", text, flags=re.DOTALL)
    examples: dict[str, str] = {}
    for block in blocks:
        first, _, _ = block.partition("\n")
        if first.startswith("# file: "):
            examples[f"policies/{first.removeprefix('# file: ').strip()}"] = block
    return examples


EXAMPLES = readme_examples()
INTERNS = {k: v for k, v in EXAMPLES.items() if k.endswith("interns_max_tokens.rego")}
OFFICE = {k: v for k, v in EXAMPLES.items() if k.endswith("office_hours.rego")}


def test_the_readme_has_both_examples() -> None:
    assert len(INTERNS) == 1 and len(OFFICE) == 1


def interns_request(max_tokens: int | None, project: str = "interns") -> dict[str, Any]:
    return build_input(
        {
            "request": {"max_tokens": max_tokens},
            "key": {"project_id": project},
            "project": {"id": project},
        }
    )


@pytest.mark.parametrize(
    ("max_tokens", "project", "allowed"),
    [
        (8192, "interns", False),
        (4097, "interns", False),
        (4096, "interns", True),
        (None, "interns", True),
        (8192, "research", True),
    ],
)
def test_interns_max_tokens(max_tokens: int | None, project: str, allowed: bool) -> None:
    decision = decide(engine_with(INTERNS), interns_request(max_tokens, project))
    assert decision.allow is allowed
    if not allowed:
        assert (decision.status, decision.message) == (403, INTERNS_MESSAGE)
        assert [(r.code, r.message) for r in decision.reasons] == [("custom", INTERNS_MESSAGE)]


@pytest.mark.parametrize(
    ("time", "allowed"),
    [
        ("2026-11-27T10:00:00Z", True),  # Friday morning
        ("2026-11-23T08:00:00Z", True),  # Monday, opening minute
        ("2026-11-27T17:59:59.999Z", True),
        ("2026-11-27T18:00:00Z", False),  # Friday, closing time
        ("2026-11-27T07:59:59Z", False),
        ("2026-11-28T12:00:00Z", False),  # Saturday
        ("2026-11-29T12:00:00Z", False),  # Sunday
        ("2026-11-27T09:30:00+02:00", False),  # 07:30 UTC
    ],
)
def test_office_hours(time: str, allowed: bool) -> None:
    decision = decide(engine_with(OFFICE), build_input({"request": {"time": time}}))
    assert decision.allow is allowed, time
    if not allowed:
        assert (decision.status, decision.message) == (403, OFFICE_MESSAGE)


def test_custom_rules_come_after_authentication() -> None:
    document = build_input(
        {
            "request": {"token_present": False, "time": "2026-11-28T12:00:00Z"},
            "key": None,
            "project": None,
            "organization": None,
        }
    )
    decision = decide(engine_with(OFFICE), document)
    assert decision.status == 401


def test_builtin_iam_rules_answer_before_custom_rules() -> None:
    document = build_input(
        {
            "request": {"time": "2026-11-28T12:00:00Z"},
            "key": {"iam_rules": [{"id": "r", "type": "deny_models", "values": ["gpt-4"]}]},
        }
    )
    decision = decide(engine_with(OFFICE), document)
    assert decision.message == "Access denied: Model gpt-4 is in the denied models list"


def test_custom_rules_answer_before_credentials() -> None:
    document = build_input(
        {"request": {"time": "2026-11-28T12:00:00Z"}, "organization": {"credits": "0"}}
    )
    decision = decide(engine_with(OFFICE), document)
    assert (decision.status, decision.message) == (403, OFFICE_MESSAGE)


def test_several_custom_denials_are_all_reasons_and_the_first_answers() -> None:
    document = build_input(
        {
            "request": {"max_tokens": 9000, "time": "2026-11-28T12:00:00Z"},
            "key": {"project_id": "interns"},
            "project": {"id": "interns"},
        }
    )
    decision = decide(engine_with({**INTERNS, **OFFICE}), document)
    assert decision.message == INTERNS_MESSAGE  # sorts before the office-hours message
    assert [r.message for r in decision.reasons] == [INTERNS_MESSAGE, OFFICE_MESSAGE]


def test_a_custom_rule_may_choose_its_status() -> None:
    rule = """package gateway

import rego.v1

custom_deny contains {"status": 429, "message": "Slow down: streaming is paused"} if {
	input.request.stream
}
"""
    engine = engine_with({"policies/no_streams.rego": rule})
    decision = decide(engine, build_input({"request": {"stream": True}}))
    assert (decision.status, decision.message) == (429, "Slow down: streaming is paused")
    assert decide(engine, build_input()).allow


def test_without_custom_files_nothing_changes() -> None:
    assert decide(engine_with(), build_input({"request": {"max_tokens": 100000}})).allow
