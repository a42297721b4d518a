"""Hand-written or library? /metrics and the PostgreSQL pool, measured (issue 16 point 8).

Compares, in one process:

- metrics: recording one request's series (`request`, `decision_latency`,
  `upstream_latency`, `usage`) and rendering the exposition text, with
  `proxy.metrics.Metrics` and with `prometheus_client` (a private
  `CollectorRegistry`, as the gateway keeps no global state);
- the pool: `concurrency` tasks each running `queries` times `SELECT 1` through
  `proxy.store.pg_pool.ConnectionPool` and through `psycopg_pool.AsyncConnectionPool`
  (same size, autocommit), against the PostgreSQL at `--database`.

    pip install prometheus-client==0.26.0 psycopg-pool==3.3.3   # or: pip install -e '.[bench]'
    python -m bench.dependency_choice [--database postgresql://root@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from proxy.metrics import Metrics
from proxy.store.pg_pool import ConnectionPool

__all__ = ["main"]

PROVIDERS = ("openai", "anthropic", "mock")
MODELS = tuple(f"model-{n}" for n in range(12))


def _best_of(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


def _per_call_us(count: int, body: Callable[[int], None]) -> float:
    started = time.perf_counter()
    body(count)
    return (time.perf_counter() - started) / count * 1e6


def _ours_recording(count: int) -> tuple[Callable[[int], None], Callable[[], str]]:
    metrics = Metrics()

    def record(n: int) -> None:
        for i in range(n):
            provider, model = PROVIDERS[i % 3], MODELS[i % 12]
            metrics.request("chat.completions", 200)
            metrics.decision_latency(0.00004)
            metrics.upstream_latency(provider, 0.0123)
            metrics.usage(provider, model, 12, 30, Decimal("0.000084"))

    record(count)  # every series exists before timing, as on a warm gateway
    return record, lambda: metrics.render({"gateway_upstream_responses_open": ("open", 0.0)})


def _library_recording(count: int) -> tuple[Callable[[int], None], Callable[[], str]]:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    requests = Counter("gateway_requests", "", ["operation", "status"], registry=registry)
    decision = Histogram("gateway_decision_seconds", "", registry=registry)
    upstream = Histogram("gateway_upstream_seconds", "", ["provider"], registry=registry)
    tokens = Counter("gateway_tokens", "", ["provider", "model", "kind"], registry=registry)
    cost = Counter("gateway_cost_usd", "", ["provider", "model"], registry=registry)
    Gauge("gateway_upstream_responses_open", "", registry=registry).set(0)

    def record(n: int) -> None:
        for i in range(n):
            provider, model = PROVIDERS[i % 3], MODELS[i % 12]
            requests.labels("chat.completions", "200").inc()
            decision.observe(0.00004)
            upstream.labels(provider).observe(0.0123)
            tokens.labels(provider, model, "prompt").inc(12)
            tokens.labels(provider, model, "completion").inc(30)
            # A float counter: a Decimal cost is rounded here (ours keeps it exact).
            cost.labels(provider, model).inc(float(Decimal("0.000084")))

    record(count)
    return record, lambda: generate_latest(registry).decode()


def _metrics_rows(count: int, rounds: int) -> list[tuple[str, float, float, int]]:
    rows = []
    for name, make in (
        ("proxy.metrics (hand-written)", _ours_recording),
        ("prometheus_client 0.26", _library_recording),
    ):
        record, render = make(count)

        def recording_us(record: Callable[[int], None] = record) -> float:
            return _per_call_us(count, record)

        recording = _best_of(rounds, recording_us)

        def rendering(render: Callable[[], str] = render) -> float:
            started = time.perf_counter()
            for _ in range(100):
                render()
            return (time.perf_counter() - started) / 100 * 1e6

        rows.append((name, recording, _best_of(rounds, rendering), len(render())))
    return rows


async def _drive(
    connection: Callable[[], Any], concurrency: int, queries: int
) -> tuple[float, float]:
    """Queries per second and the mean µs per query seen by one task."""

    async def task() -> None:
        for _ in range(queries):
            async with connection() as conn:
                await conn.execute("SELECT 1")

    await asyncio.gather(*(task() for _ in range(concurrency)))  # warm: every slot open
    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    total = concurrency * queries
    return total / elapsed, elapsed / queries * 1e6


async def _pool_rows(
    database: str, size: int, concurrency: int, queries: int, rounds: int
) -> list[tuple[str, float, float]]:
    from psycopg_pool import AsyncConnectionPool

    async def ours() -> tuple[float, float]:
        pool = ConnectionPool(database, size)
        try:
            return await _drive(pool.connection, concurrency, queries)
        finally:
            await pool.close()

    async def library() -> tuple[float, float]:
        pool = AsyncConnectionPool(
            database, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
        )
        await pool.open(wait=True)
        try:
            return await _drive(pool.connection, concurrency, queries)
        finally:
            await pool.close()

    rows = []
    for name, run in (
        ("proxy.store.pg_pool (hand-written)", ours),
        ("psycopg_pool 3.3.3", library),
    ):
        results: list[tuple[float, float]] = []
        for _ in range(rounds):
            results.append(await run())
        best = max(results)
        rows.append((name, best[0], best[1]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print("| metrics | µs to record one request | µs to render /metrics | bytes |")
    print("|---|---:|---:|---:|")
    for name, record, render, size in _metrics_rows(args.records, args.rounds):
        print(f"| {name} | {record:.2f} | {render:.0f} | {size:,} |")
    print()
    print(
        f"| pool (size {args.pool_size}, {args.concurrency} tasks x {args.queries} "
        "`SELECT 1`) | queries/s | µs per query per task |"
    )
    print("|---|---:|---:|")
    rows = asyncio.run(
        _pool_rows(args.database, args.pool_size, args.concurrency, args.queries, args.rounds)
    )
    for name, rate, latency in rows:
        print(f"| {name} | {rate:,.0f} | {latency:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
