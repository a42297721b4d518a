"""The YAML built-in cases (tests/cases/builtins) are well formed and cover every built-in.

The engine's case runner evaluates them; this test keeps the corpus honest on
its own: known fields only, unique notes, an expectation per case, and every
registered built-in called from at least one module (operators by their
symbol or their name).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.builtins import BUILTINS

CASES_DIR = Path(__file__).resolve().parents[1] / "cases" / "builtins"
FIELDS = {
    "note", "query", "modules", "data", "input", "want_result", "want_error_code",
    "want_error", "strict_error", "sort_bindings",
}  # fmt: skip
OPERATOR_SYMBOLS = {
    "plus": " + ", "minus": " - ", "mul": " * ", "div": " / ", "rem": " % ",
    "lt": " < ", "lte": " <= ", "gt": " > ", "gte": " >= ", "equal": " == ",
    "neq": " != ", "and": " & ", "or": " | ",
}  # fmt: skip


def _load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert set(document) == {"cases"}, f"{path.name}: only a `cases:` key is allowed"
        cases.extend(document["cases"])
    return cases


CASES = _load_cases()


def test_there_are_case_files() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=[case["note"] for case in CASES])
def test_case_is_well_formed(case: dict[str, Any]) -> None:
    assert set(case) <= FIELDS, f"unknown fields: {set(case) - FIELDS}"
    assert case["query"] == "data.t.p = x"
    assert all(module.startswith("package t\n") for module in case["modules"])
    has_result = "want_result" in case
    has_error = "want_error_code" in case
    assert has_result != has_error, "a case expects either a result or an error"
    if has_error:
        assert case["want_error_code"] in {"eval_type_error", "eval_builtin_error"}
        assert case.get("strict_error") is True
    else:
        assert all(set(row) == {"x"} for row in case["want_result"])


def test_notes_are_unique() -> None:
    notes = [case["note"] for case in CASES]
    assert len(notes) == len(set(notes))


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_is_called_by_some_case(name: str) -> None:
    source = "\n".join(module for case in CASES for module in case["modules"])
    called = re.search(rf"(?<![\w.]){re.escape(name)}\(", source) is not None
    symbol = OPERATOR_SYMBOLS.get(name)
    assert called or (symbol is not None and symbol in source), f"no case calls `{name}`"
