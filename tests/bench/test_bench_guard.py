"""The CI guard's verdict on fake figures, and the /metrics histogram reader."""

from __future__ import annotations

from bench.figures import (
    AddedLatency,
    BackendFigures,
    Memory,
    RunFigures,
    added_latency,
    decision_latency,
    render_markdown,
)
from bench.guard import guard_failures
from bench.loadgen import LoadResult, Sample


def load(rate: float, errors: int = 0) -> LoadResult:
    return LoadResult(int(rate * 2), errors, 2.0, rate, 1.0, 5.0, 1.0, 5.0)


def backend(gateway_rate: float, gateway_streams: float, errors: int = 0) -> BackendFigures:
    added = AddedLatency(100, 0.1, 0.2, 0.6, 1.2, 0.5, 1.0, 0)
    return BackendFigures(
        backend="sqlite",
        latency_c1=added,
        ttft_c1=added,
        direct_64=load(20_000),
        gateway_64=load(gateway_rate, errors),
        direct_streams=load(260),
        gateway_streams=load(gateway_streams),
        memory=Memory(60.0, 70.0, 65.0, 65.5, 3.0),
        decision=None,
    )


def run(*backends: BackendFigures, skipped: dict[str, str] | None = None) -> RunFigures:
    return RunFigures("2 cores", "short", "python -m bench.run --short", backends, skipped or {})


def test_healthy_gateway_passes() -> None:
    assert guard_failures(run(backend(3_000, 250))) == []


def test_throughput_collapse_fails_with_the_ratio() -> None:
    [failure] = guard_failures(run(backend(280, 250)))
    assert "backend sqlite" in failure
    assert "1.4% of direct" in failure
    assert "below 3%" in failure


def test_a_gateway_at_the_target_rate_passes() -> None:
    # 2,000 req/s against a 28,000 req/s direct call is the target, not a regression
    assert guard_failures(run(backend(2_000 * 20_000 / 28_000, 250))) == []


def test_stream_collapse_fails() -> None:
    [failure] = guard_failures(run(backend(3_000, 41)))
    assert "streams/s" in failure
    assert "15.8% of direct" in failure


def test_errors_fail_even_when_fast() -> None:
    [failure] = guard_failures(run(backend(3_000, 250, errors=600)))
    assert "failed in the 64 concurrent phase" in failure


def test_nothing_measured_fails() -> None:
    failures = guard_failures(run(skipped={"sqlite": "`gateway serve` exited with 1"}))
    assert failures == ["backend sqlite: not measured: `gateway serve` exited with 1"]
    assert guard_failures(run()) == ["no backend was measured"]


def test_markdown_shows_both_sides_and_the_ratio() -> None:
    text = render_markdown(run(backend(3_000, 250)))
    assert (
        "| 64 concurrent, req/s / latency | 20,000 / 5.0 | **3,000 / 5.0** | 0.15 | 0 / 0 |" in text
    )
    assert "**+0.500 / +1.000**" in text
    assert "Warning" not in text
    assert "may limit the gateway figures" in render_markdown(run(backend(9_000, 250)))


def test_decision_latency_from_a_prometheus_histogram() -> None:
    text = "\n".join(
        [
            "# TYPE gateway_decision_seconds histogram",
            'gateway_decision_seconds_bucket{le="0.0005"} 90',
            'gateway_decision_seconds_bucket{le="0.001"} 99',
            'gateway_decision_seconds_bucket{le="0.0025"} 100',
            'gateway_decision_seconds_bucket{le="+Inf"} 100',
            "gateway_decision_seconds_sum 0.04",
            "gateway_decision_seconds_count 100",
        ]
    )
    latency = decision_latency(text)
    assert latency is not None
    assert latency.count == 100
    assert latency.mean_ms == 0.4
    assert latency.p50_at_most_ms == 0.5
    assert latency.p99_at_most_ms == 1.0
    assert decision_latency("gateway_requests_total 3") is None


def test_added_latency_is_the_difference_of_percentiles() -> None:
    ms = 1_000_000
    direct = [Sample(200, 1 * ms, (1 + i % 2) * ms, True) for i in range(100)]
    gateway = [Sample(200, 2 * ms, (2 + i % 2) * ms, True) for i in range(99)]
    gateway.append(Sample(502, 1 * ms, 1 * ms, True))
    latency = added_latency(direct, gateway, ttft=False)
    assert (latency.direct_p50_ms, latency.gateway_p50_ms, latency.added_p50_ms) == (1.0, 2.0, 1.0)
    assert (latency.direct_p99_ms, latency.gateway_p99_ms, latency.added_p99_ms) == (2.0, 3.0, 1.0)
    assert latency.errors == 1
    assert latency.samples == 99
    assert added_latency(direct, gateway, ttft=True).added_p50_ms == 1.0
