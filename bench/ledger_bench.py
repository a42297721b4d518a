"""Added latency of the usage ledger per request: one reserve + one settle.

    .venv/bin/python bench/ledger_bench.py [--requests 2000] [--concurrency 64]
        [--backends sqlite,postgres,redis]

For each backend: sequential latency (p50 / p99 / mean of reserve+settle, and of a
`key_context` read) and the throughput of `--concurrency` concurrent reserve+settle
loops in one process. PostgreSQL (127.0.0.1:5432, database `test`) gets a
throw-away schema and Redis (127.0.0.1:6379) a throw-away key prefix; both are
removed afterwards. Not a test: prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.store import Store, open_store

PG = "postgresql://root@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
COST = Decimal("0.000123")


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(store: Store, requests: int, concurrency: int) -> dict[str, float]:
    await store.migrate()
    await store.ensure_defaults()
    key, token = await store.create_key("default", None, "bench")
    token_hash = store.hash_token(token)
    for _ in range(50):  # warm-up: connections, prepared statements, script cache
        r = await store.reserve(key.id, None, COST)
        assert r is not None
        await store.settle(r, COST)
        await store.key_context(token_hash)
    ledger: list[float] = []
    lookups: list[float] = []
    for _ in range(requests):
        t0 = time.perf_counter()
        await store.key_context(token_hash)
        t1 = time.perf_counter()
        reservation = await store.reserve(key.id, "default", COST)
        assert reservation is not None
        await store.settle(reservation, COST)
        t2 = time.perf_counter()
        lookups.append(t1 - t0)
        ledger.append(t2 - t1)

    async def worker(n: int) -> None:
        for _ in range(n):
            reservation = await store.reserve(key.id, None, COST)
            assert reservation is not None
            await store.settle(reservation, COST)

    per_worker = max(1, requests // concurrency)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "p50": _pct(ledger, 0.5) * 1e6,
        "p99": _pct(ledger, 0.99) * 1e6,
        "mean": statistics.fmean(ledger) * 1e6,
        "lookup_p50": _pct(lookups, 0.5) * 1e6,
        "throughput": per_worker * concurrency / elapsed,
    }


async def _run_backend(name: str, requests: int, concurrency: int) -> dict[str, float]:
    import psycopg

    schema = f"gwbench_{secrets.token_hex(4)}"
    prefix = f"gwbench:{secrets.token_hex(4)}:"
    url = f"{PG}?options=-csearch_path%3D{schema}"
    with tempfile.TemporaryDirectory() as tmp:
        if name == "sqlite":
            store = open_store(f"sqlite:///{tmp}/bench.db")
        else:
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            if name == "postgres":
                store = open_store(url, pool_size=concurrency)
            else:
                store = open_store(url, REDIS, redis_prefix=prefix, pool_size=10)
        try:
            return await _measure(store, requests, concurrency)
        finally:
            await store.close()
            if name != "sqlite":
                with psycopg.connect(PG, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            if name == "redis":
                import redis

                client = redis.Redis(host="127.0.0.1", port=6379)
                keys = list(client.scan_iter(match=f"{prefix}*"))
                if keys:
                    client.delete(*keys)
                client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    args = parser.parse_args()
    print(
        "| backend | reserve+settle p50 (µs) | p99 (µs) | mean (µs) "
        f"| key_context p50 (µs) | reserve+settle/s at {args.concurrency} concurrent |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.backends.split(","):
        r = asyncio.run(_run_backend(name, args.requests, args.concurrency))
        print(
            f"| {name} | {r['p50']:.0f} | {r['p99']:.0f} | {r['mean']:.0f} "
            f"| {r['lookup_p50']:.0f} | {r['throughput']:.0f} |"
        )


if __name__ == "__main__":
    main()
