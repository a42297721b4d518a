"""The figures of one `bench.wrk_compare` target and issue 15's ratios between them.

Kept apart from the harness so the arithmetic (which floor, which direction, which
target) is tested without starting a server.
"""

from __future__ import annotations

import statistics

import msgspec

__all__ = [
    "LITESTAR_FLOOR",
    "MOCK",
    "RAW_FLOOR",
    "StreamFigures",
    "TargetFigures",
    "WrkFigures",
    "median_streams",
    "median_wrk",
    "ratio_line",
]

MOCK = "mock called directly"
LITESTAR_FLOOR = "Litestar + aiohttp pass-through (floor)"
RAW_FLOOR = "raw ASGI + aiohttp pass-through (floor)"


class WrkFigures(msgspec.Struct, frozen=True):
    """One `wrk` run: requests/s, latency percentiles in ms, failed answers."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


class StreamFigures(msgspec.Struct, frozen=True):
    """One run of paced streams: completed streams/s, time to first byte p99 in ms."""

    streams_per_s: float
    ttft_p99_ms: float
    errors: int


class TargetFigures(msgspec.Struct, frozen=True):
    """A target's medians over the rounds (streams None when not measured)."""

    c1: WrkFigures
    c64: WrkFigures
    streams: StreamFigures | None = None


def median_wrk(figures: list[WrkFigures]) -> WrkFigures:
    return WrkFigures(
        statistics.median(f.requests_per_s for f in figures),
        statistics.median(f.p50_ms for f in figures),
        statistics.median(f.p99_ms for f in figures),
        sum(f.errors for f in figures),
    )


def median_streams(figures: list[StreamFigures]) -> StreamFigures | None:
    if not figures:
        return None
    return StreamFigures(
        statistics.median(f.streams_per_s for f in figures),
        statistics.median(f.ttft_p99_ms for f in figures),
        sum(f.errors for f in figures),
    )


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole > 0 else "n/a"


def ratio_line(name: str, medians: dict[str, TargetFigures]) -> str:
    """Issue 15's targets for the gateway target `name`, against the mock and the floors
    of the same run (a floor absent from `medians` is left out)."""
    gateway, mock = medians[name], medians[MOCK]
    parts = [
        f"c=1 added p50 {gateway.c1.p50_ms - mock.c1.p50_ms:.2f} ms (target <= 0.6), "
        f"added p99 {gateway.c1.p99_ms - mock.c1.p99_ms:.2f} ms, "
        f"p99 {gateway.c1.p99_ms:.2f} ms (target <= 3)"
    ]
    rate = gateway.c64.requests_per_s
    shares = []
    if LITESTAR_FLOOR in medians:
        floor = medians[LITESTAR_FLOOR].c64.requests_per_s
        shares.append(f"{_share(rate, floor)} of the Litestar floor (target >= 75%)")
    if RAW_FLOOR in medians:
        shares.append(
            f"{_share(rate, medians[RAW_FLOOR].c64.requests_per_s)} of the raw-ASGI floor"
        )
    if shares:
        parts.append(f"c=64 {rate:,.0f} req/s = " + ", ".join(shares))
    floor_streams = medians[LITESTAR_FLOOR].streams if LITESTAR_FLOOR in medians else None
    if gateway.streams is not None and floor_streams is not None:
        ttft = (
            f"{gateway.streams.ttft_p99_ms / floor_streams.ttft_p99_ms:.2f}x"
            if floor_streams.ttft_p99_ms > 0
            else "n/a"
        )
        parts.append(
            f"streams {_share(gateway.streams.streams_per_s, floor_streams.streams_per_s)} "
            f"of the floor's streams/s (target >= 97%), TTFT p99 {ttft} the floor's "
            "(target <= 1.2x)"
        )
    return f"{name}: " + "; ".join(parts)
