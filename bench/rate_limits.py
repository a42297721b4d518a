"""Rate limits: which window algorithm, and what it costs (docs/architecture.md §6).

1. Precision. Each algorithm with a ceiling of 60 requests per minute faces the
   arrivals that hurt it most (a burst at a window's edge, then steady traffic); the
   script prints the most requests it admitted in any 60-second window. The contract
   (issue 13) is "no more than the limit in any window": only the sliding log holds it.
2. Cost. `Store.admit` + `settle` one request at a time on a store (SQLite by default,
   or `--database` / `--usage-store` for PostgreSQL / Redis), for a key without limits
   and for one with rpm, tpm and max_parallel set (ceilings never reached, so every
   request is admitted and the log keeps about `--rpm` entries): microseconds per request.

    .venv/bin/python -m bench.rate_limits [--requests 2000] [--database URL --usage-store URL]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from proxy.store import Store, open_store
from proxy.store.base import Admitted, Claim, RateLimits

WINDOW = 60.0
LIMIT = 60


def sliding_log() -> Callable[[float], bool]:
    admitted: list[float] = []

    def admit(t: float) -> bool:
        while admitted and admitted[0] <= t - WINDOW:
            admitted.pop(0)
        if len(admitted) >= LIMIT:
            return False
        admitted.append(t)
        return True

    return admit


def gcra() -> Callable[[float], bool]:
    """GCRA (leaky bucket as a meter) with burst LIMIT and period WINDOW / LIMIT."""
    period, tolerance = WINDOW / LIMIT, WINDOW - WINDOW / LIMIT
    tat = [0.0]

    def admit(t: float) -> bool:
        arrival = max(tat[0], t)
        if arrival - t > tolerance:
            return False
        tat[0] = arrival + period
        return True

    return admit


def fixed_window() -> Callable[[float], bool]:
    counts: dict[int, int] = {}

    def admit(t: float) -> bool:
        bucket = math.floor(t / WINDOW)
        if counts.get(bucket, 0) >= LIMIT:
            return False
        counts[bucket] = counts.get(bucket, 0) + 1
        return True

    return admit


def two_buckets() -> Callable[[float], bool]:
    """The common approximation: the previous window's count weighted by its overlap."""
    counts: dict[int, int] = {}

    def admit(t: float) -> bool:
        bucket = math.floor(t / WINDOW)
        overlap = 1 - (t - bucket * WINDOW) / WINDOW
        if counts.get(bucket - 1, 0) * overlap + counts.get(bucket, 0) >= LIMIT:
            return False
        counts[bucket] = counts.get(bucket, 0) + 1
        return True

    return admit


def worst_window(make: Callable[[], Callable[[float], bool]]) -> int:
    """The most admitted in any 60 s window over adversarial arrivals: the worst of
    (a) one request every 0.1 s for 5 minutes and (b) bursts of 200 at the end of one
    window and the start of the next, then every 0.1 s."""
    worst = 0
    arrivals_a = [i / 10 for i in range(3000)]
    arrivals_b = [59.9] * 200 + [60.0] * 200 + [60 + i / 10 for i in range(1200)]
    for arrivals in (arrivals_a, arrivals_b):
        admit = make()
        times = [t for t in arrivals if admit(t)]
        for i, start in enumerate(times):
            inside = sum(1 for t in times[i:] if t < start + WINDOW)
            worst = max(worst, inside)
    return worst


async def _cost(store: Store, requests: int, limits: RateLimits) -> float:
    suffix = secrets.token_hex(4)
    await store.create_project(f"bench-{suffix}", "default", "hybrid")
    key, _ = await store.create_key(f"bench-{suffix}", None, "bench", rate_limits=limits)
    now = time.time()
    started = time.perf_counter()
    for i in range(requests):
        claim = Claim(
            key_id=key.id,
            organization_id=None,
            amount=Decimal("0.0001"),
            project_id=f"bench-{suffix}",
            key_limits=limits,
            tokens=500,
            # Spread over two minutes of request time: the log is pruned as in production.
            now=now + i * 120 / requests,
        )
        outcome = await store.admit(claim, f"t{i}")
        assert isinstance(outcome, Admitted), outcome
        await store.settle(outcome.reservation, Decimal("0.00005"), tokens=300)
    return (time.perf_counter() - started) / requests * 1e6


async def _measure(database: str, usage_store: str | None, requests: int, rpm: int) -> None:
    store = open_store(database, usage_store)
    await store.migrate()
    await store.ensure_defaults()
    limited = RateLimits(rpm=rpm, tpm=10**9, max_parallel=1000)
    try:
        await _cost(store, 200, RateLimits())  # warm up
        for _ in range(2):  # interleaved, twice: the machine is shared
            plain = await _cost(store, requests, RateLimits())
            rated = await _cost(store, requests, limited)
            print(
                f"admit+settle, no limits: {plain:7.1f} us/request; "
                f"rpm {rpm} + tpm + max_parallel: {rated:7.1f} us/request "
                f"({(rated / plain - 1) * 100:+.0f}%)"
            )
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=1000)
    parser.add_argument("--database")
    parser.add_argument("--usage-store")
    args = parser.parse_args()
    for name, make in (
        ("sliding log", sliding_log),
        ("GCRA", gcra),
        ("fixed window", fixed_window),
        ("two-bucket approximation", two_buckets),
    ):
        print(f"{name:26} most admitted in a 60 s window at limit {LIMIT}: {worst_window(make)}")
    with tempfile.TemporaryDirectory() as tmp:
        database = args.database or f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(_measure(database, args.usage_store, args.requests, args.rpm))


if __name__ == "__main__":
    main()
