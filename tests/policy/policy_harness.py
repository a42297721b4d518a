"""Shared helpers for the policy tests: the base input, deep merges, engines, schemas."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import jsonschema
import msgspec
import yaml

from proxy.documents import Decision, InputDocument, decision_from_value, input_value

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = REPO / "policies"
GATEWAY_REGO = POLICY_DIR / "gateway.rego"
CATALOG_YAML = POLICY_DIR / "catalog.yaml"
SCHEMA_DIR = REPO / "schemas"
if TYPE_CHECKING:
    from policy_engine import Engine, ast
    from policy_engine.engine import Prepared

CASES_DIR = Path(__file__).resolve().parent / "cases"

# A request that passes every check: an active key without limit in an active
# hybrid project whose organization has credits; the gateway holds an OpenAI key.
# Shared with the tooling tests (tests/fixtures/allowed_request.json).
BASE_INPUT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "allowed_request.json").read_text(
        encoding="utf-8"
    )
)


def merged(base: Any, override: Any) -> Any:
    """`override` laid over `base`: mappings merge key by key, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = merged(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def build_input(override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A full input document, typed through `InputDocument` so it has the proxy's shape,
    and checked against schemas/input.schema.json (every test input is)."""
    raw = merged(BASE_INPUT, override or {})
    document = input_value(msgspec.convert(raw, InputDocument))
    input_validator().validate(document)
    return document


@cache
def input_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema("input.schema.json"))


@cache
def catalog() -> dict[str, Any]:
    data = yaml.safe_load(CATALOG_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def gateway_sources(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    sources = {"policies/gateway.rego": GATEWAY_REGO.read_text(encoding="utf-8")}
    sources.update(extra or {})
    return sources


@cache
def _parsed(text: str, name: str) -> ast.Module:
    from policy_engine.parser import parse_module

    return parse_module(text, name)


@cache
def _engine_for(extra: tuple[tuple[str, str], ...]) -> Engine:
    """Each engine parses the default policy from the same text: parsed once here (the
    AST is frozen, so engines can share it), a third of each build's CPU, and the
    equivalence tests build 50 engines each (25 policies, YAML and Rego forms)."""
    from policy_engine import Engine
    from policy_engine import engine as engine_module

    with mock.patch.object(engine_module, "parse_module", _parsed):
        return Engine.from_sources(gateway_sources(dict(extra)), data={"catalog": catalog()})


def engine_with(extra: Mapping[str, str] | None = None) -> Engine:
    """The default policy plus `extra` files (name -> text), built once per distinct set."""
    return _engine_for(tuple(sorted((extra or {}).items())))


@cache
def _prepared_decision(engine: Engine) -> Prepared:
    """`data.gateway.decision` of `engine`, prepared once: preparing compiles the query
    (~1.3 ms), ten times what evaluating it costs, and the equivalence tests decide
    thousands of inputs on a few engines."""
    return engine.prepare("data.gateway.decision")


def decide(engine: Engine, document: Mapping[str, Any]) -> Decision:
    """The decision exactly as the proxy reads it (no JSON round trip in between)."""
    from policy_engine import UNDEFINED

    value = _prepared_decision(engine)(dict(document))
    assert value is not UNDEFINED, "data.gateway.decision is undefined"
    return decision_from_value(value)


@cache
def schema(name: str) -> dict[str, Any]:
    data = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_cases(paths: Iterable[Path]) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(paths):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in loaded["cases"]:
            case["_file"] = path.name
            cases.append(case)
    return cases
