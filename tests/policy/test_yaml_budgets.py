"""Period budgets set as policy (`budgets:` in *.iam.yaml, issue 13 point 5).

The YAML and the equivalent hand-written Rego decide identically: hypothesis draws 25
budget policies (for keys, projects and all keys), writes each once as a `*.iam.yaml`
file and once as a Rego module of `package gateway.budget_policies`, and on 40 drawn
requests per policy (1,000 in all) compares which budgets apply
(`data.gateway.policy_budgets`, what the proxy asks) and the full decision on the
input the proxy then builds (the chosen budget's window, with drawn usage). Also:
precedence, and the YAML's errors name the field, the line and the fix.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_harness import build_input, decide, engine_with

from policy_engine import UNDEFINED, PolicyError
from policy_engine.parser import parse_module
from policy_engine.source import Source
from policy_engine.yaml_policy import lower

POLICIES = 25
INPUTS_PER_POLICY = 40
KEYS = ["key_a", "key_b"]
PROJECTS = ["proj_a", "proj_b"]
AMOUNTS = ["0", "0.50", "1", "1.00", "5", "20.00"]
PERIODS = ["hour", "day", "week", "month"]
WINDOWS = {
    "hour": ("2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z"),
    "day": ("2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"),
    "week": ("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"),
    "month": ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
}
STORED = st.one_of(
    st.none(),
    st.fixed_dictionaries({"amount": st.sampled_from(AMOUNTS), "period": st.sampled_from(PERIODS)}),
)

targets = st.one_of(
    st.sampled_from(KEYS).map(lambda k: {"key": k}),
    st.sampled_from(PROJECTS).map(lambda p: {"project": p}),
    st.just({"all_keys": True}),
)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    budgets = []
    for number in range(draw(st.integers(1, 5))):
        budget: dict[str, Any] = {
            "applies_to": draw(targets),
            "amount": draw(st.sampled_from(AMOUNTS)),
            "period": draw(st.sampled_from(PERIODS)),
        }
        if draw(st.booleans()):
            budget["id"] = f"budget-{number}"
        budgets.append(budget)
    return {"budgets": budgets}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request, the key store's budgets and each period window's settled usage."""
    project = draw(st.sampled_from(PROJECTS))
    usage = {
        p: draw(st.sampled_from(["0", "0.49", "0.50", "1", "4.99", "5.00", "30"])) for p in PERIODS
    }
    return {
        "document": build_input(
            {
                "key": {"id": draw(st.sampled_from(KEYS)), "project_id": project},
                "project": {"id": project},
            }
        ),
        "stored": {"key": draw(STORED), "project": draw(STORED)},
        "usage": {
            "key": usage,
            "project": {p: draw(st.sampled_from(["0", "0.50", "20", "25"])) for p in PERIODS},
        },
    }


def as_rego(policy: dict[str, Any]) -> str:
    """The hand-written Rego a person would use instead of the YAML file."""
    lines = ["package gateway.budget_policies", "", "import rego.v1", ""]
    for budget in policy["budgets"]:
        target = budget["applies_to"]
        field = next((f for f in ("key", "project") if f in target), None)
        element = {
            "layer": field or "gateway",
            "target": target[field] if field else None,
            "id": budget.get("id"),
            "amount": budget["amount"],
            "period": budget["period"],
        }
        lines += [f"budgets contains {json.dumps(element)}", ""]
    return "\n".join(lines)


def _proxy_decision(engine: Any, drawn: dict[str, Any]) -> tuple[Any, Any]:
    """What the gateway does: ask which budgets apply (the policy weighs the key
    store's, in the input, against the policy files'), put each with its window into
    the input, decide."""
    document = {
        **drawn["document"],
        **{
            subject: {**drawn["document"][subject], "stored_budget": drawn["stored"][subject]}
            for subject in ("key", "project")
        },
    }
    chosen = engine.prepare("data.gateway.effective_budgets")(document)
    assert chosen is not UNDEFINED
    full = dict(document)
    for subject in ("key", "project"):
        budget = chosen[subject]
        stored = drawn["stored"][subject]
        # Neither ceiling is loosened: a stored budget of the same period as the one
        # that applies is never below it.
        if budget is not None and stored is not None and stored["period"] == budget["period"]:
            assert Decimal(budget["amount"]) <= Decimal(stored["amount"]), drawn
        if budget is not None:
            start, end = WINDOWS[budget["period"]]
            window = {
                "amount": budget["amount"],
                "period": budget["period"],
                "usage": drawn["usage"][subject][budget["period"]],
                "reserved": "0",
                "window_start": start,
                "resets_at": end,
            }
            full[subject] = {**document[subject], "period_budget": window}
    return chosen, decide(engine, full)


@settings(
    max_examples=POLICIES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policy=policies(),
    inputs=st.lists(requests(), min_size=INPUTS_PER_POLICY, max_size=INPUTS_PER_POLICY),
)
def test_yaml_and_rego_budgets_decide_identically(
    policy: dict[str, Any], inputs: list[dict[str, Any]]
) -> None:
    yaml_engine = engine_with({"policies/generated.iam.yaml": yaml.safe_dump(policy)})
    rego_engine = engine_with({"policies/generated_budgets.rego": as_rego(policy)})
    for drawn in inputs:
        assert _proxy_decision(yaml_engine, drawn) == _proxy_decision(rego_engine, drawn), drawn


def _without_spans(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_spans(v) for k, v in node.items() if k != "span"}
    if isinstance(node, (list, tuple)):
        return [_without_spans(v) for v in node]
    return node


@settings(max_examples=100, deadline=None, derandomize=True)
@given(policy=policies())
def test_the_rego_form_parses_to_the_lowered_ast(policy: dict[str, Any]) -> None:
    (lowered,) = lower(Source(name="generated.iam.yaml", text=yaml.safe_dump(policy)))
    parsed = parse_module(as_rego(policy), "generated_budgets.rego")
    assert _without_spans(msgspec.to_builtins(lowered)) == _without_spans(
        msgspec.to_builtins(parsed)
    )


POLICY = """version: 1
budgets:
  - {applies_to: {all_keys: true}, amount: "20", period: day}
  - {applies_to: {all_keys: true}, amount: "5", period: week, id: weekly}
  - {applies_to: {key: key_a}, amount: "100", period: month}
  - {applies_to: {project: proj_a}, amount: "500.00", period: month}
"""


def _chosen(document: dict[str, Any]) -> Any:
    engine = engine_with({"policies/budgets.iam.yaml": POLICY})
    return engine.prepare("data.gateway.policy_budgets")(document)


def test_a_budget_for_the_key_wins_over_all_keys_and_the_smallest_amount_is_the_ceiling() -> None:
    own = _chosen(build_input({"key": {"id": "key_a"}, "project": {"id": "proj_a"}}))
    assert (own["key"]["amount"], own["key"]["period"]) == ("100", "month")
    assert own["project"]["amount"] == "500.00"
    other = _chosen(build_input({"key": {"id": "key_b"}, "project": {"id": "proj_b"}}))
    assert (other["key"]["id"], other["key"]["amount"]) == ("weekly", "5")
    assert other["project"] is None
    # Without any budget in the policy files nothing applies.
    plain = engine_with({}).prepare("data.gateway.policy_budgets")(build_input())
    assert plain == {"key": None, "project": None}


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (
            'budgets:\n  - applies_to: {project: p}\n    amount: "5"\n    period: fortnight\n',
            ":4:",
            "`budgets[0].period`",
        ),
        (
            "budgets:\n  - applies_to: {project: p}\n    amount: 5.5\n    period: day\n",
            ":3:",
            "`budgets[0].amount`",
        ),
        (
            "budgets:\n  - applies_to: {project: p, all_keys: true}\n"
            '    amount: "5"\n    period: day\n',
            ":2:",
            "must name exactly one of",
        ),
        (
            'budgets:\n  - applies_to: {project: p}\n    amount: "5"\n'
            "    period: day\n    limit: 3\n",
            ":5:",
            "unknown field `limit`",
        ),
    ],
)
def test_a_bad_budget_names_the_field_and_the_line(text: str, where: str, says: str) -> None:
    with pytest.raises(PolicyError) as raised:
        lower(Source(name="team.iam.yaml", text=text))
    message = str(raised.value)
    assert f"team.iam.yaml{where}" in message, message
    assert says in message, message


@pytest.mark.parametrize("amount", ["5.5", '"5/day"', '"$5"'])
def test_a_bad_amount_says_how_to_write_one(amount: str) -> None:
    """`amount: 5.5` is a YAML float: the message named the field but not the fix."""
    text = f"budgets:\n  - applies_to: {{project: p}}\n    amount: {amount}\n    period: day\n"
    with pytest.raises(PolicyError) as raised:
        lower(Source(name="team.iam.yaml", text=text))
    assert 'quoted decimal, e.g. `amount: "500.00"`' in str(raised.value), str(raised.value)
