"""The YAML and Rego forms of the same IAM rules decide identically.

Hypothesis draws 25 policies (rule sets for keys, projects and all keys, with
globs, ids and inactive rules), writes each once as a `*.iam.yaml` file and once
as the equivalent hand-written Rego module, loads both next to the default
policy and compares the full decisions on 40 drawn requests per policy (whose
keys also carry random key-store rules): 1,000 inputs in all.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_harness import build_input, decide, engine_with

from policy_engine.parser import parse_module
from policy_engine.source import Source
from policy_engine.yaml_policy import lower

POLICIES = 25
INPUTS_PER_POLICY = 40

KEYS = ["key_a", "key_b"]
PROJECTS = ["proj_a", "proj_b"]
RULE_VALUES = {
    "allow_models": ["gpt-4", "gpt-4*", "gpt-4o*", "claude-*", "mock-model", "*", "llama-3.?-*"],
    "deny_models": ["gpt-4", "gpt-4o-mini", "claude-*", "mock-*", "llama-*", "text-*"],
    "allow_providers": ["openai", "openrouter", "anthropic", "groq", "together", "mock"],
    "deny_providers": ["openai", "openrouter", "anthropic", "groq", "mock"],
    "allow_operations": ["chat.completions", "completions", "embeddings", "models.list"],
    "deny_operations": ["chat.completions", "completions", "embeddings", "models.list"],
}
MODELS = [
    "gpt-4",
    "openai/gpt-4",
    "openrouter/gpt-4",
    "gpt-4o-mini",
    "claude-sonnet-4",
    "anthropic/claude-sonnet-4",
    "mock-model",
    "llama-3.3-70b-instruct",
    "groq/llama-3.3-70b-instruct",
    "text-embedding-3-small",
]
PROVIDERS = ["openai", "openrouter", "anthropic", "groq", "together"]


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule_type = draw(st.sampled_from(sorted(RULE_VALUES)))
    values = draw(st.lists(st.sampled_from(RULE_VALUES[rule_type]), min_size=1, max_size=3))
    rule: dict[str, Any] = {rule_type: values}
    if draw(st.booleans()):
        rule["status"] = draw(st.sampled_from(["active", "inactive"]))
    return rule


@st.composite
def store_rules(draw: st.DrawFn) -> dict[str, Any]:
    """A rule as the key store hands it over, combined with the file's rules."""
    rule = draw(rules())
    rule_type = next(t for t in RULE_VALUES if t in rule)
    return {
        "id": f"store-{draw(st.integers(0, 9))}",
        "type": rule_type,
        "values": rule[rule_type],
        "status": rule.get("status", "active"),
    }


targets = st.one_of(
    st.sampled_from(KEYS).map(lambda k: {"key": k}),
    st.sampled_from(PROJECTS).map(lambda p: {"project": p}),
    st.just({"all_keys": True}),
)
rule_sets = st.fixed_dictionaries(
    {"applies_to": targets, "rules": st.lists(rules(), min_size=1, max_size=3)}
)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    sets: list[dict[str, Any]] = draw(st.lists(rule_sets, min_size=1, max_size=4))
    number = 0
    for rule_set in sets:
        rules_of_set: list[dict[str, Any]] = rule_set["rules"]
        for rule in rules_of_set:
            number += 1
            if draw(st.booleans()):
                rule["id"] = f"rule-{number}"
    return {"rule_sets": sets}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    operation = draw(
        st.sampled_from(["chat.completions", "completions", "embeddings", "models.list"])
    )
    project = draw(st.sampled_from(PROJECTS))
    return build_input(
        {
            "request": {
                "operation": operation,
                "model": None if operation == "models.list" else draw(st.sampled_from(MODELS)),
            },
            "key": {
                "id": draw(st.sampled_from(KEYS)),
                "project_id": project,
                "iam_rules": draw(st.lists(store_rules(), max_size=2)),
            },
            "project": {
                "id": project,
                "mode": draw(st.sampled_from(["api-keys", "credits", "hybrid"])),
                "provider_keys": draw(st.lists(st.sampled_from(PROVIDERS), unique=True)),
            },
            "organization": {"credits": draw(st.sampled_from(["0", "0.01", "10.00"]))},
            "gateway": {
                "credentialed_providers": [
                    "mock",
                    *draw(st.lists(st.sampled_from(PROVIDERS), unique=True)),
                ]
            },
        }
    )


def as_rego(policy: dict[str, Any]) -> str:
    """The hand-written Rego a person would use instead of the YAML file."""
    lines = ["package gateway.iam_policies", "", "import rego.v1", ""]
    layers = {"key": "key", "project": "project"}
    for rule_set in policy["rule_sets"]:
        target = rule_set["applies_to"]
        field = next((f for f in ("key", "project") if f in target), None)
        layer = layers[field] if field else "gateway"
        for rule in rule_set["rules"]:
            rule_type = next(t for t in RULE_VALUES if t in rule)
            element = {
                "layer": layer,
                "id": rule.get("id"),
                "type": rule_type,
                "values": rule[rule_type],
                "status": rule.get("status", "active"),
            }
            head = f"rules contains {json.dumps(element)}"
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
    policy=policies(),
    inputs=st.lists(requests(), min_size=INPUTS_PER_POLICY, max_size=INPUTS_PER_POLICY),
)
def test_yaml_and_rego_forms_decide_identically(
    policy: dict[str, Any], inputs: list[dict[str, Any]]
) -> None:
    yaml_engine = engine_with({"policies/generated.iam.yaml": yaml.safe_dump(policy)})
    rego_engine = engine_with({"policies/generated_iam.rego": as_rego(policy)})
    for document in inputs:
        assert decide(yaml_engine, document) == decide(rego_engine, document), document


def _without_spans(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_spans(v) for k, v in node.items() if k != "span"}
    if isinstance(node, (list, tuple)):
        return [_without_spans(v) for v in node]
    return node


@settings(max_examples=200, deadline=None, derandomize=True)
@given(policy=policies())
def test_the_rego_form_parses_to_the_lowered_ast(policy: dict[str, Any]) -> None:
    """Cheap and broad: the two forms are the same AST before any evaluation."""
    (lowered,) = lower(Source(name="generated.iam.yaml", text=yaml.safe_dump(policy)))
    parsed = parse_module(as_rego(policy), "generated_iam.rego")
    assert _without_spans(msgspec.to_builtins(lowered)) == _without_spans(
        msgspec.to_builtins(parsed)
    )
