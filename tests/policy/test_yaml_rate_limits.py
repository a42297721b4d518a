"""`rate_limits:` in `*.iam.yaml` files (issue 13 point 2): ceilings set as policy for
one key, one project (all its keys together) or every key, over the store's own.

Hypothesis draws 25 policy files, writes each once as YAML and once as the equivalent
hand-written Rego (rules adding to `data.gateway.iam_policies.rate_ceilings`), and
compares the full decisions of both on 40 drawn requests per file, whose key and
project carry random limits and windows: 1,000 inputs in all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_harness import build_input, decide, engine_with

from policy_engine.errors import PolicyError
from policy_engine.source import Source
from policy_engine.yaml_policy import lower

POLICIES = 25
INPUTS_PER_POLICY = 40
KEYS = ["key_a", "key_b"]
PROJECTS = ["proj_a", "proj_b"]

ceiling = st.one_of(st.none(), st.integers(1, 12))


@st.composite
def ceilings(draw: st.DrawFn) -> dict[str, int]:
    limits = {
        name: value
        for name in ("rpm", "tpm", "max_parallel")
        if (value := draw(ceiling)) is not None
    }
    return limits or {"rpm": draw(st.integers(1, 12))}


targets = st.one_of(
    st.sampled_from(KEYS).map(lambda k: {"key": k}),
    st.sampled_from(PROJECTS).map(lambda p: {"project": p}),
    st.just({"all_keys": True}),
)
policies = st.lists(
    st.fixed_dictionaries({"applies_to": targets, "rate_limits": ceilings()}),
    min_size=1,
    max_size=4,
).map(lambda sets: {"rule_sets": sets})


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any] | None:
    """A key's or project's limits and window as the store hands them over, or none."""
    if draw(st.booleans()):
        return None
    counted = draw(st.booleans())
    count = st.integers(0, 14) if counted else st.none()
    return {
        "rpm": draw(ceiling),
        "tpm": draw(ceiling),
        "max_parallel": draw(ceiling),
        "requests_in_window": draw(count),
        "tokens_in_window": draw(count),
        "parallel": draw(count),
        "retry_after_seconds": draw(st.one_of(st.none(), st.integers(1, 60))),
    }


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    project = draw(st.sampled_from(PROJECTS))
    return build_input(
        {
            "request": {
                "model": draw(st.sampled_from(["gpt-4", "mock-model"])),
                "token_bound": draw(st.one_of(st.none(), st.integers(0, 14))),
            },
            "key": {
                "id": draw(st.sampled_from(KEYS)),
                "project_id": project,
                "rate_limits": draw(windows()),
            },
            "project": {"id": project, "rate_limits": draw(windows())},
        }
    )


def as_rego(policy: dict[str, Any]) -> str:
    """The hand-written Rego a person would use instead of the YAML file."""
    lines = ["package gateway.iam_policies", "", "import rego.v1", ""]
    for rule_set in policy["rule_sets"]:
        target = rule_set["applies_to"]
        field = next((f for f in ("key", "project") if f in target), None)
        limits = rule_set["rate_limits"]
        element = {
            "layer": field or "gateway",
            "rpm": limits.get("rpm"),
            "tpm": limits.get("tpm"),
            "max_parallel": limits.get("max_parallel"),
        }
        head = f"rate_ceilings contains {json.dumps(element)}"
        if field is None:
            lines += [head, ""]
        else:
            lines += [
                f"{head} if {{",
                f"\tinput.{field}.id == {json.dumps(target[field])}",
                "}",
                "",
            ]
    return "\n".join(lines)


@settings(
    max_examples=POLICIES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    policy=policies,
    inputs=st.lists(requests(), min_size=INPUTS_PER_POLICY, max_size=INPUTS_PER_POLICY),
)
def test_yaml_and_rego_rate_limits_decide_identically(
    policy: dict[str, Any], inputs: list[dict[str, Any]]
) -> None:
    yaml_engine = engine_with({"policies/generated.iam.yaml": yaml.safe_dump(policy)})
    rego_engine = engine_with({"policies/generated_rates.rego": as_rego(policy)})
    for document in inputs:
        assert decide(yaml_engine, document) == decide(rego_engine, document), document


PROJECT_CEILING = """
rule_sets:
  - applies_to: {project: proj_1}
    rate_limits: {rpm: 10}
  - applies_to: {all_keys: true}
    rate_limits: {max_parallel: 4, tpm: 50000}
"""


def test_policy_ceilings_lower_the_stores_and_answer_429() -> None:
    engine = engine_with({"policies/ceilings.iam.yaml": PROJECT_CEILING})
    # The key's own tpm (the store's) is lower than the file's: it stays.
    allowed = decide(engine, build_input({"key": {"rate_limits": {"tpm": 1000}}}))
    assert allowed.allow and allowed.rate_limits is not None
    assert allowed.rate_limits.key is not None and allowed.rate_limits.project is not None
    assert (allowed.rate_limits.key.tpm, allowed.rate_limits.key.max_parallel) == (1000, 4)
    assert allowed.rate_limits.project.rpm == 10
    # The store counted 10 requests of the project in the window: the file's ceiling.
    window = {"rpm": 10, "requests_in_window": 10, "tokens_in_window": 0, "parallel": 0}
    refused = decide(engine, build_input({"project": {"rate_limits": window}}))
    assert (refused.allow, refused.status) == (False, 429)
    assert refused.message.startswith(
        "Rate limit reached for project proj_1 on requests per min (RPM): Limit 10, Used 10"
    )
    # Without any policy file or store limits, nothing is limited.
    plain = decide(engine_with(), build_input())
    assert plain.rate_limits is not None
    assert (plain.rate_limits.key, plain.rate_limits.project) == (None, None)


def test_a_rate_limits_block_without_a_limit_is_refused_with_its_location() -> None:
    text = "rule_sets:\n  - applies_to: {all_keys: true}\n    rate_limits: {}\n"
    with pytest.raises(PolicyError) as caught:
        lower(Source(name="empty.iam.yaml", text=text))
    message = str(caught.value)
    assert "empty.iam.yaml:3:" in message
    assert "`rule_sets[0].rate_limits` sets no limit" in message
    zero = "rule_sets:\n  - applies_to: {all_keys: true}\n    rate_limits: {rpm: 0}\n"
    with pytest.raises(PolicyError, match=r"rate_limits\.rpm"):
        lower(Source(name="zero.iam.yaml", text=zero))
