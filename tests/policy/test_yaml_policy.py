"""YAML IAM policies: the lowering corpus (tests/cases/yaml/) and the example files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
import yaml
from policy_harness import POLICY_DIR, REPO, build_input, decide, engine_with, schema

from policy_engine.errors import PolicyError
from policy_engine.parser import parse_module
from policy_engine.source import Source
from policy_engine.yaml_policy import YAML_POLICY_ERROR, lower

CORPUS = REPO / "tests" / "cases" / "yaml"


def _cases(name: str) -> list[dict[str, Any]]:
    loaded = yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = loaded["cases"]
    return cases


LOWERING = _cases("lowering.yaml")
ERRORS = _cases("errors.yaml")


def _without_spans(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_spans(v) for k, v in node.items() if k != "span"}
    if isinstance(node, (list, tuple)):
        return [_without_spans(v) for v in node]
    return node


@pytest.mark.parametrize("case", LOWERING, ids=[c["note"] for c in LOWERING])
def test_lowering_gives_the_ast_of_the_equivalent_rego(case: dict[str, Any]) -> None:
    modules = lower(Source(name="case.iam.yaml", text=case["file"]))
    expected = parse_module(case["want_rego"], "expected.rego")
    assert len(modules) == 1
    got = _without_spans(msgspec.to_builtins(modules[0]))
    assert got == _without_spans(msgspec.to_builtins(expected))
    jsonschema.validate(yaml.safe_load(case["file"]), schema("policy.schema.json"))


def test_lowered_rules_point_at_their_yaml_lines() -> None:
    text = LOWERING[1]["file"]
    (module,) = lower(Source(name="interns.iam.yaml", text=text))
    lines = [rule.span.line for rule in module.rules]
    assert lines == [7, 10]
    assert all(rule.span.file == "interns.iam.yaml" for rule in module.rules)


@pytest.mark.parametrize("case", ERRORS, ids=[c["note"] for c in ERRORS])
def test_invalid_policies_are_located_errors(case: dict[str, Any]) -> None:
    with pytest.raises(PolicyError) as caught:
        lower(Source(name="bad.iam.yaml", text=case["file"]))
    got = [(d.line, d.column, d.message) for d in caught.value.diagnostics]
    assert len(got) == len(case["want_errors"]), got
    for (line, column, message), want in zip(got, case["want_errors"], strict=True):
        assert (line, column) == (want["line"], want["column"]), message
        assert want["contains"] in message
    assert {d.code for d in caught.value.diagnostics} == {YAML_POLICY_ERROR}
    assert all(d.file == "bad.iam.yaml" for d in caught.value.diagnostics)
    # The rendered error shows the file, the position and the offending line.
    first = caught.value.diagnostics[0]
    assert f"bad.iam.yaml:{first.line}:{first.column}: {YAML_POLICY_ERROR}:" in str(caught.value)


def _checked_examples() -> list[Path]:
    return sorted(POLICY_DIR.glob("**/*.iam.yaml"))


@pytest.mark.parametrize("path", _checked_examples(), ids=lambda p: p.name)
def test_example_files_load_and_validate(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    modules = lower(Source(name=str(path), text=text))
    assert modules and modules[0].rules
    jsonschema.validate(yaml.safe_load(text), schema("policy.schema.json"))
    first = text.splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    assert (path.parent / first.removeprefix(prefix)).resolve() == (
        REPO / "schemas" / "policy.schema.json"
    )


def test_there_are_example_files() -> None:
    assert len(_checked_examples()) >= 3


def test_the_readme_yaml_example_loads_and_validates() -> None:
    text = (POLICY_DIR / "README.md").read_text(encoding="utf-8")
    blocks = [
        b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL) if "rule_sets" in b
    ]
    assert blocks
    for block in blocks:
        (module,) = lower(Source(name="README.md", text=block))
        data = yaml.safe_load(block)
        # One definition per rule and per `rate_limits:` block.
        expected = sum(
            len(rule_set.get("rules", [])) + ("rate_limits" in rule_set)
            for rule_set in data["rule_sets"]
        )
        assert len(module.rules) == expected
        jsonschema.validate(data, schema("policy.schema.json"))


def test_yaml_policies_name_the_agent_api_operations() -> None:
    text = (POLICY_DIR / "examples" / "coding-agents.iam.yaml").read_text(encoding="utf-8")
    engine = engine_with({"policies/coding-agents.iam.yaml": text})
    project = {"project": {"id": "coding-agents"}, "key": {"project_id": "coding-agents"}}
    request = {"operation": "messages", "model": "mock-model"}
    assert decide(engine, build_input({**project, "request": request})).allow
    chat = decide(
        engine, build_input({**project, "request": {**request, "operation": "chat.completions"}})
    )
    expected = "Access denied: Operation chat.completions is not in the allowed operations list"
    assert (chat.status, chat.message) == (403, expected)
