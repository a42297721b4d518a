"""OPA's own Rego conformance cases, one parametrised test per corpus.

The cases live outside the repo (../shared/conformance/opa and opa-more, read-only).
Each corpus has its own known-failures list (`<case id> | <reason>`): a listed case
must still fail, so a case that starts passing fails the run and the list only shrinks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_engine.cases import case_failure

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "conformance"


@dataclass(frozen=True)
class Corpus:
    name: str
    directory: Path
    known_failures_file: Path
    expected_cases: int

    def cases(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.directory.is_dir():
            return []
        found: list[tuple[str, dict[str, Any]]] = []
        seen: dict[str, int] = {}
        for path in sorted(self.directory.rglob("*.yaml")):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            for case in document["cases"]:
                case_id = f"{path.parent.name}/{path.name}::{case['note']}"
                # Upstream repeats a few notes within a file: number the repeats.
                seen[case_id] = seen.get(case_id, 0) + 1
                if seen[case_id] > 1:
                    case_id = f"{case_id} #{seen[case_id]}"
                found.append((case_id, case))
        return found

    def known_failures(self) -> dict[str, str]:
        known: dict[str, str] = {}
        for line in self.known_failures_file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                note, _, reason = line.partition(" | ")
                known[note.strip()] = reason.strip()
        return known


HERE = Path(__file__).parent
CORPORA = (
    Corpus("opa", SHARED / "opa", HERE / "opa_known_failures.txt", 253),
    Corpus("opa-more", SHARED / "opa-more", HERE / "opa_more_known_failures.txt", 900),
)
CASES = {corpus.name: corpus.cases() for corpus in CORPORA}
KNOWN = {corpus.name: corpus.known_failures() for corpus in CORPORA}
PARAMS = [
    pytest.param(corpus.name, case_id, case, id=f"{corpus.name}:{case_id}")
    for corpus in CORPORA
    for case_id, case in CASES[corpus.name]
] or [pytest.param("absent", "absent", {}, id="absent")]


def _skip_if_absent(corpus: str) -> None:
    if not CASES.get(corpus):
        directory = SHARED / corpus
        if os.environ.get("CI"):
            pytest.fail(f"OPA conformance cases missing at {directory}")
        pytest.skip(f"OPA conformance cases not found at {directory} (../shared is absent)")


@pytest.mark.parametrize(("corpus", "case_id", "case"), PARAMS)
def test_opa_case(corpus: str, case_id: str, case: dict[str, Any]) -> None:
    _skip_if_absent(corpus)
    failure = case_failure(case)
    if case_id in KNOWN[corpus]:
        assert failure is not None, (
            f"{case_id} now passes: remove it from the {corpus} known-failures list"
        )
        return
    assert failure is None, failure


@pytest.mark.parametrize("corpus", CORPORA, ids=[c.name for c in CORPORA])
def test_opa_pass_rate(corpus: Corpus, capsys: pytest.CaptureFixture[str]) -> None:
    _skip_if_absent(corpus.name)
    cases = CASES[corpus.name]
    assert len(cases) == corpus.expected_cases
    passed = sum(1 for _, case in cases if case_failure(case) is None)
    with capsys.disabled():
        print(
            f"\nOPA conformance ({corpus.name}): {passed}/{len(cases)} cases pass "
            f"({passed / len(cases):.1%})"
        )
    # Every case passes or is listed with a reason (test_opa_case checks both ways).
    assert passed + len(KNOWN[corpus.name]) == len(cases)


@pytest.mark.parametrize("corpus", CORPORA, ids=[c.name for c in CORPORA])
def test_known_failures_are_real_cases(corpus: Corpus) -> None:
    _skip_if_absent(corpus.name)
    ids = {case_id for case_id, _ in CASES[corpus.name]}
    known = KNOWN[corpus.name]
    assert set(known) <= ids, f"unknown ids in the list: {sorted(set(known) - ids)}"
    assert all(known.values()), "every known failure needs a reason"
