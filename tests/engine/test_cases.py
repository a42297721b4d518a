"""Runs every engine case file under tests/cases/ (recursively) through the case runner.

A case in the engine format has `query`; files of other formats (such as the
YAML-policy corpus in tests/cases/yaml, which has its own runner) are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.cases import case_failure

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"


def _engine_cases() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(CASES_DIR.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for case in document.get("cases") or []:
            if "query" in case:
                found.append((f"{path.relative_to(CASES_DIR)}::{case['note']}", case))
    return found


CASES = _engine_cases()


def test_corpus_is_present() -> None:
    own = [case_id for case_id, _ in CASES if not case_id.startswith(("builtins/", "yaml/"))]
    assert len(own) >= 80


@pytest.mark.parametrize(("case_id", "case"), CASES, ids=[case_id for case_id, _ in CASES])
def test_case(case_id: str, case: dict[str, Any]) -> None:
    failure = case_failure(case)
    assert failure is None, failure
