"""The SQLite store at one request at a time: do WAL checkpoints stall request writes?

Issue 15 found the gateway's c=1 p99 at 14 ms on SQLite, from the writes queued
behind a WAL checkpoint every 1,000 writes. This loop measures the store alone (no
HTTP, so far less noise than `wrk` on a shared machine): `key_context`, `reserve`,
`settle` one after another, `--requests` times, each iteration timed. Checkpoints start
every `_CHECKPOINT_EVERY / 2` iterations (two inline writes each), so besides the distribution it
prints the worst iteration around each of those points ("checkpoint windows") next to
the worst of as many windows half-way between them, and the largest WAL seen.

    .venv/bin/python bench/checkpoint_stall.py [--requests 8000]

Run as a script, with `PYTHONPATH=<another checkout>`, it measures that checkout's
store (as `-m`, the current directory would come first).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from proxy.store import open_store
from proxy.store.sqlite import _CHECKPOINT_EVERY

COST = Decimal("0.000123")
_PERIOD = _CHECKPOINT_EVERY // 2  # iterations between checkpoints: two inline writes each


async def _loop(path: Path, requests: int) -> tuple[list[float], int]:
    store = open_store(f"sqlite:///{path}", None)
    await store.migrate()
    await store.ensure_defaults()
    key, token = await store.create_key("default", None, "checkpoint-stall")
    token_hash = store.hash_token(token)
    wal = path.with_name(path.name + "-wal")
    latencies: list[float] = []
    wal_max = 0
    try:
        for i in range(requests):
            start = time.perf_counter()
            await store.key_context(token_hash)
            reservation = await store.reserve(key.id, "default", COST)
            assert reservation is not None
            await store.settle(reservation, COST)
            latencies.append((time.perf_counter() - start) * 1e3)
            if i % 100 == 0:
                wal_max = max(wal_max, wal.stat().st_size)
    finally:
        await store.close()
    return latencies, wal_max


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=8000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="checkpoint-stall-", dir=".") as tmp:
        latencies, wal_max = asyncio.run(_loop(Path(tmp) / "ledger.db", args.requests))
    ordered = sorted(latencies[_PERIOD:])  # after the first checkpoint's warm-up
    marks = range(_PERIOD, len(latencies) - _PERIOD // 2, _PERIOD)
    at_checkpoints = [max(latencies[m - 3 : m + 4]) for m in marks]
    between = [max(latencies[m + _PERIOD // 2 - 3 : m + _PERIOD // 2 + 4]) for m in marks]
    print(
        f"{args.requests} iterations: p50 {_percentile(ordered, 0.5):.3f} ms, "
        f"p99 {_percentile(ordered, 0.99):.2f} ms, p99.9 {_percentile(ordered, 0.999):.2f} ms, "
        f"max {ordered[-1]:.1f} ms; largest WAL {wal_max / 1e6:.1f} MB"
    )
    print(
        f"worst iteration in {len(marks)} checkpoint windows: median "
        f"{statistics.median(at_checkpoints):.2f} ms; in as many windows between them: "
        f"median {statistics.median(between):.2f} ms"
    )


if __name__ == "__main__":
    main()
