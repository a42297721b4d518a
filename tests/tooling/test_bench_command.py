"""`policy-engine bench`: a prepared query timed per decision (median, p99)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tooling_helpers import FIXTURES, POLICIES, run_cli

from policy_engine.tooling.bench import percentile


def test_bench_reports_median_and_p99_per_decision() -> None:
    gate = FIXTURES / "explain"
    result = run_cli(
        [
            "bench",
            str(gate / "gate.rego"),
            "-i",
            str(gate / "denied.input.json"),
            "data.fixtures.gate.decision",
            "--count",
            "50",
        ]
    )
    assert result.status == 0
    first, second = result.out.splitlines()
    assert first.startswith("data.fixtures.gate.decision: 50 decisions, median ")
    assert " µs, p99 " in first
    assert second == 'result: {"allow":false,"message":"model denied: gpt-4","status":403}'


def test_bench_json_has_consistent_statistics(tmp_path: Path) -> None:
    document = tmp_path / "input.json"
    document.write_text(json.dumps({"request": {"token_present": False}}), encoding="utf-8")
    result = run_cli(
        [
            "bench",
            str(POLICIES),
            "-i",
            str(document),
            "data.gateway.decision",
            "--count",
            "40",
            "--format",
            "json",
        ]
    )
    stats = json.loads(result.out)
    assert stats["count"] == 40
    assert stats["min_us"] <= stats["median_us"] <= stats["p99_us"] <= stats["max_us"]
    assert '"status":401' in stats["result"]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_bench_of_a_query_that_is_not_a_reference_is_an_error(tmp_path: Path) -> None:
    document = tmp_path / "input.json"
    document.write_text("{}", encoding="utf-8")
    result = run_cli(["bench", str(POLICIES), "-i", str(document), "x := 1"])
    assert result.status == 2
    assert "prepare takes a single reference" in result.err
