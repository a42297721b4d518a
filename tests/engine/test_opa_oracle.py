"""The answers recorded in tests/cases/language/opa_oracle.yaml are OPA's own.

Runs each case through OPA's Go engine (`opa_bindings`, from the PyPI package
`opa-golib-python-bindings`) when it is installed; see `make differential` for how
to install it. CI does not need it: without the bindings these tests skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.cases import plain

ORACLE_CASES = Path(__file__).resolve().parents[1] / "cases" / "language" / "opa_oracle.yaml"
CASES = yaml.safe_load(ORACLE_CASES.read_text(encoding="utf-8"))["cases"]

opa = pytest.importorskip(
    "opa_bindings", reason="OPA's engine (opa-golib-python-bindings) is not installed"
)


def _opa_answer(case: dict[str, Any]) -> tuple[str, Any]:
    engine = opa.OpaEngine()
    try:
        try:
            if case.get("data"):
                engine.add_data(case["data"])
            for number, text in enumerate(case["modules"]):
                engine.add_policy(f"module{number}.rego", text)
            rows = engine.eval_query(case["query"], case.get("input") or {})
        except opa.OpaUndefinedError:
            return ("result", [])
        except opa.OpaError as exc:
            return ("error", str(exc))
        return ("result", rows)
    finally:
        engine.close()


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_recorded_answer_is_opas(case: dict[str, Any]) -> None:
    kind, answer = _opa_answer(case)
    if "want_error_code" in case:
        assert kind == "error" and case["want_error_code"] in answer, answer
        return
    assert kind == "result", answer
    got = [{k: plain(v) for k, v in row.items()} for row in json.loads(json.dumps(answer))]
    want = [{k: plain(v) for k, v in row.items()} for row in case["want_result"]]
    assert got == want
