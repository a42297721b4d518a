"""The benchmark's figures as data, read from samples and /metrics, shown as Markdown."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from bench.loadgen import LoadResult, Sample, percentile

__all__ = [
    "AddedLatency",
    "BackendFigures",
    "DecisionLatency",
    "Memory",
    "RunFigures",
    "added_latency",
    "decision_latency",
    "render_markdown",
]

_NS_PER_MS = 1_000_000


class AddedLatency(msgspec.Struct, frozen=True):
    """Concurrency 1, direct and gateway interleaved; milliseconds."""

    samples: int
    direct_p50_ms: float
    direct_p99_ms: float
    gateway_p50_ms: float
    gateway_p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    errors: int


def added_latency(direct: Sequence[Sample], gateway: Sequence[Sample], ttft: bool) -> AddedLatency:
    """Percentiles of both series and their difference (time to first byte if ``ttft``)."""

    def times(samples: Sequence[Sample]) -> list[int]:
        good = [s for s in samples if s.status == 200 and s.complete]
        return sorted(s.first_byte_ns if ttft else s.total_ns for s in good)

    d, g = times(direct), times(gateway)
    errors = len(direct) + len(gateway) - len(d) - len(g)

    def ms(value: int) -> float:
        return round(value / _NS_PER_MS, 3)

    d50, d99 = percentile(d, 0.5), percentile(d, 0.99)
    g50, g99 = percentile(g, 0.5), percentile(g, 0.99)
    return AddedLatency(
        samples=min(len(d), len(g)),
        direct_p50_ms=ms(d50),
        direct_p99_ms=ms(d99),
        gateway_p50_ms=ms(g50),
        gateway_p99_ms=ms(g99),
        added_p50_ms=ms(g50 - d50),
        added_p99_ms=ms(g99 - d99),
        errors=errors,
    )


class DecisionLatency(msgspec.Struct, frozen=True):
    """From the gateway's decision-latency histogram; p50/p99 are bucket upper bounds."""

    count: int
    mean_ms: float
    p50_at_most_ms: float
    p99_at_most_ms: float


_BUCKET = re.compile(r'^(\w*decision\w*_seconds)_bucket\{[^}]*le="([^"]+)"[^}]*\}\s+(\S+)$')
_SUM = re.compile(r"^(\w*decision\w*_seconds)_sum(?:\{[^}]*\})?\s+(\S+)$")


def decision_latency(metrics_text: str) -> DecisionLatency | None:
    """Read the first ``*decision*_seconds`` histogram of a Prometheus text page."""
    buckets: list[tuple[float, float]] = []
    total = 0.0
    for line in metrics_text.splitlines():
        if match := _BUCKET.match(line):
            buckets.append((float(match.group(2)), float(match.group(3))))
        elif match := _SUM.match(line):
            total = float(match.group(2))
    if not buckets or buckets[-1][1] <= 0:
        return None
    buckets.sort()
    count = buckets[-1][1]

    def bound(fraction: float) -> float:
        for upper, cumulative in buckets:
            if cumulative >= fraction * count:
                return round(upper * 1000, 3)
        return float("inf")

    return DecisionLatency(int(count), round(total / count * 1000, 4), bound(0.5), bound(0.99))


class Memory(msgspec.Struct, frozen=True):
    """Resident set size of the gateway process tree, MiB."""

    idle_mib: float
    peak_under_load_mib: float
    after_load_mib: float
    after_soak_mib: float
    soak_s: float


class BackendFigures(msgspec.Struct, frozen=True):
    """Every figure of one ledger backend, each next to its direct baseline."""

    backend: str
    latency_c1: AddedLatency
    ttft_c1: AddedLatency
    direct_64: LoadResult
    gateway_64: LoadResult
    direct_streams: LoadResult
    gateway_streams: LoadResult
    memory: Memory
    decision: DecisionLatency | None


class RunFigures(msgspec.Struct, frozen=True):
    machine: str
    mode: str
    command: str
    backends: tuple[BackendFigures, ...]
    skipped: dict[str, str]
    """Backend → why it was not measured."""
    engine_bench: str | None = None
    """Output of the policy engine micro-benchmark (`bench/engine_bench.py`), full mode."""


def _added_row(name: str, value: AddedLatency) -> str:
    return (
        f"| {name} | {value.direct_p50_ms:.3f} / {value.direct_p99_ms:.3f}"
        f" | {value.gateway_p50_ms:.3f} / {value.gateway_p99_ms:.3f}"
        f" | **{value.added_p50_ms:+.3f} / {value.added_p99_ms:+.3f}** | {value.samples}"
        f" | {value.errors} |"
    )


def _load_row(name: str, direct: LoadResult, gateway: LoadResult, ttft: bool) -> str:
    def p99(result: LoadResult) -> float:
        return result.ttft_p99_ms if ttft else result.latency_p99_ms

    ratio = gateway.rate_per_s / direct.rate_per_s if direct.rate_per_s else 0.0
    return (
        f"| {name} | {direct.rate_per_s:,.0f} / {p99(direct):.1f}"
        f" | **{gateway.rate_per_s:,.0f} / {p99(gateway):.1f}** | {ratio:.2f}"
        f" | {direct.errors} / {gateway.errors} |"
    )


def _backend_markdown(figures: BackendFigures) -> list[str]:
    memory, decision = figures.memory, figures.decision
    lines = [
        f"#### Ledger backend: {figures.backend}",
        "",
        "| c=1, ms | direct p50 / p99 | gateway p50 / p99 | added p50 / p99 | n | errors |",
        "|---|---:|---:|---:|---:|---:|",
        _added_row("latency", figures.latency_c1),
        _added_row("TTFT (stream)", figures.ttft_c1),
        "",
        "| load | direct rate / p99 ms | gateway rate / p99 ms | ratio | errors d / g |",
        "|---|---:|---:|---:|---:|",
        _load_row("64 concurrent, req/s / latency", figures.direct_64, figures.gateway_64, False),
        _load_row(
            "100 paced streams, streams/s / TTFT",
            figures.direct_streams,
            figures.gateway_streams,
            True,
        ),
        "",
        f"RSS (MiB): idle {memory.idle_mib}, peak under load {memory.peak_under_load_mib},"
        f" after load {memory.after_load_mib}, after a {memory.soak_s:.0f} s soak"
        f" {memory.after_soak_mib}.",
    ]
    if figures.gateway_64.rate_per_s * 3 > figures.direct_64.rate_per_s:
        lines.append(
            "Warning: the direct call is less than 3x the gateway's rate here, so the load"
            " generator and mock on the load core may limit the gateway figures."
        )
    if decision is None:
        lines.append("Decision latency: no decision histogram at /metrics.")
    else:
        lines.append(
            f"Decision latency (/metrics, {decision.count} decisions): mean"
            f" {decision.mean_ms} ms, p50 ≤ {decision.p50_at_most_ms} ms,"
            f" p99 ≤ {decision.p99_at_most_ms} ms."
        )
    return [*lines, ""]


def render_markdown(run: RunFigures) -> str:
    lines = [f"Machine: {run.machine}. Mode: {run.mode}. Command: `{run.command}`", ""]
    for figures in run.backends:
        lines += _backend_markdown(figures)
    for backend, reason in run.skipped.items():
        lines += [f"#### Ledger backend: {backend}", "", f"Not measured: {reason}", ""]
    if run.engine_bench is not None:
        lines += ["#### Policy engine micro-benchmark", "", "```", run.engine_bench.strip(), "```"]
    return "\n".join(lines)
