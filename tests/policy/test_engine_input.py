"""The proxy's engine input (`engine_input`, no JSON round trip) against the JSON form.

Over every case of tests/policy/cases: the values are the JSON round trip's, type for
type, except that arrays are tuples; and the shipped policy decides the same from
either form (the decision and the budgets the policy files set).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from policy_harness import BASE_INPUT, CASES_DIR, engine_with, load_cases, merged

from policy_engine import UNDEFINED
from proxy.documents import InputDocument, engine_input, input_value

CASES = load_cases(CASES_DIR.glob("*.yaml"))


def _as_json_would(value: Any) -> Any:
    """Arrays as lists, to compare with the JSON round trip."""
    if isinstance(value, dict):
        return {key: _as_json_would(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_as_json_would(item) for item in value]
    return value


def _shape(value: Any) -> Any:
    """The value with every member's exact type, to compare types deeply."""
    if isinstance(value, dict):
        return (dict, {key: _shape(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return (type(value), [_shape(item) for item in value])
    return (type(value), value)


def _immutable_members(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_immutable_members(item) for item in value.values())
    if isinstance(value, tuple):
        return all(_immutable_members(item) for item in value)
    return value is None or isinstance(value, str | int | bool)


@pytest.mark.parametrize("case", CASES, ids=[case["note"] for case in CASES])
def test_engine_input_is_the_json_form_and_decides_alike(case: dict[str, Any]) -> None:
    document = msgspec.convert(merged(BASE_INPUT, case.get("input") or {}), InputDocument)
    native, json_form = engine_input(document), input_value(document)
    assert _shape(_as_json_would(native)) == _shape(json_form)
    assert _immutable_members(native)
    engine = engine_with(case.get("policies"))
    for query in ("data.gateway.decision", "data.gateway.effective_budgets"):
        prepared = engine.prepare(query)
        from_native = prepared(native)
        assert from_native is not UNDEFINED
        assert _shape(from_native) == _shape(prepared(json_form)), query
