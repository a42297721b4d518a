"""The JSON Schemas in schemas/: fresh, valid, and agreeing with the files they describe."""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from types import ModuleType
from typing import Any

import jsonschema
import msgspec
import pytest
from policy_harness import CATALOG_YAML, REPO, SCHEMA_DIR, build_input, catalog, schema

from proxy.documents import CatalogDocument, Decision, InputDocument

SCHEMA_NAMES = [
    "input.schema.json",
    "decision.schema.json",
    "policy.schema.json",
    "catalog.schema.json",
    "config.schema.json",
]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_schemas", REPO / "scripts" / "generate_schemas.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_schemas_are_not_stale() -> None:
    expected = _generator().expected_files()
    assert sorted(expected) == sorted(SCHEMA_NAMES)
    for name, text in expected.items():
        current = (SCHEMA_DIR / name).read_text(encoding="utf-8")
        assert current == text, f"schemas/{name} is stale: run scripts/generate_schemas.py"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    document = schema(name)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


def test_field_docstrings_reach_the_schema() -> None:
    usage = schema("input.schema.json")["$defs"]["KeyDocument"]["properties"]["usage"]
    assert "Settled usage" in usage["description"]
    assert usage["type"] == "string"


def test_the_base_input_validates_and_a_broken_one_does_not() -> None:
    validator = jsonschema.Draft202012Validator(schema("input.schema.json"))
    document = build_input()
    validator.validate(document)
    broken = json.loads(json.dumps(document))
    broken["request"]["operation"] = "images.generate"
    assert not validator.is_valid(broken)
    broken = json.loads(json.dumps(document))
    broken["key"]["surprise"] = 1
    assert not validator.is_valid(broken)


def test_decision_schema_matches_the_decision_type() -> None:
    decision = Decision(allow=True, status=200, provider="mock", billing="credits")
    jsonschema.validate(json.loads(msgspec.json.encode(decision)), schema("decision.schema.json"))
    assert not jsonschema.Draft202012Validator(schema("decision.schema.json")).is_valid(
        {"allow": True, "status": 200, "billing": "cash"}
    )


def test_policy_schema_rejects_a_rule_with_two_types() -> None:
    validator = jsonschema.Draft202012Validator(schema("policy.schema.json"))
    good = {"rule_sets": [{"applies_to": {"key": "k"}, "rules": [{"deny_models": ["x"]}]}]}
    assert validator.is_valid(good)
    two = {
        "rule_sets": [
            {"applies_to": {"key": "k"}, "rules": [{"deny_models": ["x"], "allow_models": ["y"]}]}
        ]
    }
    assert not validator.is_valid(two)
    no_target = {"rule_sets": [{"applies_to": {}, "rules": [{"deny_models": ["x"]}]}]}
    assert not validator.is_valid(no_target)


# ---- the catalog ----------------------------------------------------------------------


def test_catalog_validates_and_decodes() -> None:
    raw = catalog()
    jsonschema.validate(raw, schema("catalog.schema.json"))
    typed = msgspec.convert(raw, CatalogDocument, strict=False)
    assert CATALOG_YAML.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../schemas/catalog.schema.json"
    )
    used = {p for model in typed.models.values() for p in model.providers}
    assert used <= set(typed.providers), "every provider serving a model is listed"


def test_catalog_prices_are_exact_decimal_strings() -> None:
    for model in catalog()["models"].values():
        for offer in model["providers"].values():
            for field in ("input_price", "output_price"):
                assert isinstance(offer[field], str)
                assert Decimal(offer[field]) >= 0


def test_catalog_content_the_contract_relies_on() -> None:
    models: dict[str, Any] = catalog()["models"]
    assert "gpt-4" in models
    assert models["mock-model"]["providers"]["mock"] == {
        "model_id": "mock-model",
        "input_price": "1.00",
        "output_price": "2.00",
        # Images are bounded there (the e2e tests send one); the mock counts only words.
        "image_input_tokens": 1000,
    }
    owners = {m["owned_by"] for m in models.values()}
    assert {"openai", "anthropic", "google", "mistral"} <= owners
    providers = {p for m in models.values() for p in m["providers"]}
    assert providers & {"together", "groq"}
    multi = [name for name, m in models.items() if len(m["providers"]) > 1]
    assert len(multi) >= 3


def test_input_document_type_round_trips_through_its_schema() -> None:
    document = build_input({"key": {"usage": "250.50", "usage_limit": "1000.00"}})
    jsonschema.validate(document, schema("input.schema.json"))
    again = msgspec.convert(document, InputDocument, strict=False)
    assert again.key is not None and again.key.usage == Decimal("250.50")


def test_config_schema_describes_the_gateway_config() -> None:
    config = schema("config.schema.json")
    properties = config["$defs"]["GatewayConfig"]["properties"]
    assert {"port", "policy_dir", "catalog", "providers", "error_format"} <= set(properties)
    validator = jsonschema.Draft202012Validator(config)
    assert validator.is_valid({"port": 4000, "error_format": "openai"})
    assert not validator.is_valid({"port": "four thousand"})
