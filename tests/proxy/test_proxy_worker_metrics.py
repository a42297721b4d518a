"""The pieces of `--workers` that need no process: merging the workers' /metrics texts
and reading `--workers`."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.metrics import Metrics
from proxy.worker_metrics import merge_expositions
from proxy.workers import parse_workers


def _worker_text(worker: str, status: int) -> str:
    metrics = Metrics((("worker", worker),))
    metrics.request("chat.completions", status)
    metrics.usage("openai", "gpt-4o", 3, 4, Decimal("0.01"))
    return metrics.render({"gateway_upstream_responses_open": ("In flight.", 0.0)})


def test_each_family_is_declared_once_with_every_workers_series() -> None:
    merged = merge_expositions([_worker_text("1", 200), _worker_text("2", 401)])
    lines = merged.splitlines()
    assert lines.count("# TYPE gateway_requests_total counter") == 1
    start = lines.index("# TYPE gateway_requests_total counter")
    assert lines[start + 1 : start + 3] == [
        'gateway_requests_total{operation="chat.completions",status="200",worker="1"} 1',
        'gateway_requests_total{operation="chat.completions",status="401",worker="2"} 1',
    ]
    assert 'gateway_upstream_responses_open{worker="2"} 0.0' in lines
    assert 'gateway_decision_seconds_bucket{worker="1",le="+Inf"} 0' in lines


def test_workers_is_a_positive_number_or_auto() -> None:
    assert parse_workers("3") == 3
    assert parse_workers("auto") >= 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="or `auto`"):
            parse_workers(bad)
