"""OPA's own Rego conformance cases, one parametrised test.

The cases live outside the repo (../shared/conformance/opa, read-only). Cases
listed in opa_known_failures.txt are expected to fail, each with a reason;
a listed case that starts passing fails the run so the list only shrinks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.cases import case_failure

REPO = Path(__file__).resolve().parents[2]
OPA_DIR = REPO.parent / "shared" / "conformance" / "opa"
KNOWN_FAILURES_FILE = Path(__file__).with_name("opa_known_failures.txt")


def _known_failures() -> dict[str, str]:
    known: dict[str, str] = {}
    for line in KNOWN_FAILURES_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            note, _, reason = line.partition(" | ")
            known[note.strip()] = reason.strip()
    return known


def _cases() -> list[tuple[str, dict[str, Any]]]:
    if not OPA_DIR.is_dir():
        return []
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(OPA_DIR.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in document["cases"]:
            found.append((f"{path.parent.name}/{path.name}::{case['note']}", case))
    return found


CASES = _cases()
KNOWN = _known_failures()


def _skip_if_absent() -> None:
    if not CASES:
        if os.environ.get("CI"):
            pytest.fail(f"OPA conformance cases missing at {OPA_DIR}")
        pytest.skip(f"OPA conformance cases not found at {OPA_DIR} (../shared is absent)")


@pytest.mark.parametrize(
    ("case_id", "case"), CASES or [("absent", {})], ids=[c[0] for c in CASES] or ["absent"]
)
def test_opa_case(case_id: str, case: dict[str, Any]) -> None:
    _skip_if_absent()
    failure = case_failure(case)
    if case_id in KNOWN:
        assert failure is not None, (
            f"{case_id} now passes: remove it from {KNOWN_FAILURES_FILE.name}"
        )
        return
    assert failure is None, failure


def test_opa_pass_rate(capsys: pytest.CaptureFixture[str]) -> None:
    _skip_if_absent()
    assert len(CASES) == 253
    passed = sum(1 for case_id, case in CASES if case_failure(case) is None)
    with capsys.disabled():
        print(f"\nOPA conformance: {passed}/{len(CASES)} cases pass ({passed / len(CASES):.1%})")
    assert passed / len(CASES) >= 0.90


def test_known_failures_are_real_cases() -> None:
    _skip_if_absent()
    ids = {case_id for case_id, _ in CASES}
    assert set(KNOWN) <= ids, f"unknown ids in the list: {sorted(set(KNOWN) - ids)}"
    assert all(KNOWN.values()), "every known failure needs a reason"
