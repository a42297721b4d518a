"""`policy-engine bench`: how long one decision takes with a prepared query.

The query is prepared once (as the proxy does), evaluated a few hundred
times to warm up, then timed call by call; the report gives the median and
the 99th percentile per decision (nearest-rank), with min, max and mean.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from typing import Any

import msgspec

from policy_engine.engine import Engine
from policy_engine.tooling.loading import PolicySet
from policy_engine.values import UNDEFINED, to_json_text

__all__ = ["BenchResult", "percentile", "render_bench", "run_bench"]

_WARMUP = 200


class BenchResult(msgspec.Struct, frozen=True, kw_only=True):
    """Per-decision times in microseconds over `count` timed evaluations."""

    query: str
    count: int
    median_us: float
    p99_us: float
    mean_us: float
    min_us: float
    max_us: float
    result: str
    """The value the query produced (JSON), to check the right thing was timed."""


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (`fraction` 0.99 for p99)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def run_bench(policies: PolicySet, query: str, document: Any, count: int = 2000) -> BenchResult:
    """Prepare `query` once and time `count` evaluations on `document`."""
    engine = Engine.from_sources(policies.sources, policies.data)
    prepared = engine.prepare(query)
    value = UNDEFINED
    for _ in range(_WARMUP):
        value = prepared(document)
    clock = time.perf_counter_ns
    times: list[float] = []
    for _ in range(max(count, 1)):
        started = clock()
        prepared(document)
        times.append((clock() - started) / 1000)
    times.sort()
    return BenchResult(
        query=query,
        count=len(times),
        median_us=round(statistics.median(times), 2),
        p99_us=round(percentile(times, 0.99), 2),
        mean_us=round(statistics.fmean(times), 2),
        min_us=round(times[0], 2),
        max_us=round(times[-1], 2),
        result="undefined" if value is UNDEFINED else to_json_text(value),
    )


def render_bench(result: BenchResult, output: str = "text") -> str:
    if output == "json":
        return json.dumps(msgspec.to_builtins(result), indent=2) + "\n"
    shown = result.result if len(result.result) <= 200 else result.result[:199] + "…"
    return (
        f"{result.query}: {result.count} decisions, median {result.median_us:.1f} µs, "
        f"p99 {result.p99_us:.1f} µs (min {result.min_us:.1f}, mean {result.mean_us:.1f}, "
        f"max {result.max_us:.1f})\nresult: {shown}\n"
    )
