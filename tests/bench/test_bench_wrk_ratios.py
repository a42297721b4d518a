"""bench.wrk_ratios: issue 15's ratios are taken against the right figure of each floor."""

from __future__ import annotations

from bench.wrk_ratios import (
    LITESTAR_FLOOR,
    MOCK,
    RAW_FLOOR,
    StreamFigures,
    TargetFigures,
    WrkFigures,
    median_streams,
    median_wrk,
    ratio_line,
)


def _target(
    c1_p50: float, c1_p99: float, rate: float, streams: float, ttft: float
) -> TargetFigures:
    return TargetFigures(
        WrkFigures(900.0, c1_p50, c1_p99, 0),
        WrkFigures(rate, 20.0, 40.0, 0),
        StreamFigures(streams, ttft, 0),
    )


MEDIANS = {
    MOCK: _target(0.06, 0.13, 20_000, 241, 40.0),
    LITESTAR_FLOOR: _target(0.54, 3.8, 4_000, 240, 50.0),
    RAW_FLOOR: _target(0.42, 1.3, 6_000, 240, 45.0),
    "gateway, sqlite": _target(0.96, 2.13, 3_000, 235.2, 60.0),
}


def test_the_ratio_line_states_every_target_of_the_issue() -> None:
    line = ratio_line("gateway, sqlite", MEDIANS)
    assert line.startswith("gateway, sqlite: c=1 added p50 0.90 ms (target <= 0.6)")
    assert "added p99 2.00 ms, p99 2.13 ms (target <= 3)" in line
    assert "c=64 3,000 req/s = 75% of the Litestar floor (target >= 75%)" in line
    assert "50% of the raw-ASGI floor" in line
    assert "streams 98% of the floor's streams/s (target >= 97%)" in line
    assert "TTFT p99 1.20x the floor's (target <= 1.2x)" in line


def test_without_floors_or_streams_only_the_latency_is_stated() -> None:
    medians = {MOCK: MEDIANS[MOCK], "gw": TargetFigures(MEDIANS[MOCK].c1, MEDIANS[MOCK].c64)}
    line = ratio_line("gw", medians)
    assert "c=1 added p50 0.00 ms" in line
    assert "floor" not in line and "streams" not in line


def test_medians_over_rounds_and_errors_summed() -> None:
    rounds = [WrkFigures(r, r / 100, r / 10, 1) for r in (300.0, 100.0, 200.0)]
    assert median_wrk(rounds) == WrkFigures(200.0, 2.0, 20.0, 3)
    assert median_streams([]) is None
    streams = [StreamFigures(230.0, 70.0, 0), StreamFigures(240.0, 60.0, 2)]
    assert median_streams(streams) == StreamFigures(235.0, 65.0, 2)
