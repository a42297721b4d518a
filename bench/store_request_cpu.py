"""CPU per request in the store alone: `Admission.reserve` + `settle`.

    PYTHONPATH=<checkout> .venv/bin/python bench/store_request_cpu.py [N] [C] [BACKEND] [KEY]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \
        bench/store_request_cpu.py N 64     # run with two N, subtract: instructions

`BACKEND` is `sqlite` (default) or `postgres-redis` (PostgreSQL at
`bench.gateway_setup.POSTGRES_URL` in a schema of its own, dropped afterwards, and
the Redis ledger at `REDIS_URL` under a prefix of its own, deleted afterwards).

`KEY` is `plain` (default): a key without limits billed to its organization's credits
(what `bench.wrk_cpu` sends); or `controls`: a key with a usage limit, a day budget and
rpm, tpm and max-parallel ceilings none of the requests reaches (what
`bench.controls_compare` sends). `C` (64) concurrent loops, `N` (6,000) requests in
all, each admitted, then settled one event-loop turn later. Prints the process CPU
time per request (the worker thread's checkpoints included) and the wall time per
request (at C=1, the latency the store adds to one request: its round trips). The
Redis and PostgreSQL servers' own CPU is not counted. Under callgrind the difference of two
runs' instruction totals over the difference of their N is the instructions per
request, a figure other load on the machine does not move.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import uvloop

from proxy.admission import Admission
from proxy.store import Store, open_store
from proxy.store.base import BudgetWindow, Claim, RateLimits, Reservation

COST = Decimal("0.000123")
BOUND = Decimal("0.0025")
WARM_UP = 200
BACKENDS = ("sqlite", "postgres-redis")
KEYS = ("plain", "controls")
HIGH = 10**9


@asynccontextmanager
async def _opened(backend: str, work_dir: Path) -> AsyncIterator[Store]:
    if backend == "sqlite":
        store = open_store(f"sqlite:///{work_dir / 'bench.db'}", None)
        try:
            yield store
        finally:
            await store.close()
        return
    import psycopg
    import redis.asyncio as aioredis

    from bench.gateway_setup import POSTGRES_URL, REDIS_URL

    schema = f"gwbench_{secrets.token_hex(6)}"
    prefix = f"gwbench:{secrets.token_hex(6)}:"
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        store = open_store(url, REDIS_URL, redis_prefix=prefix)
        try:
            yield store
        finally:
            await store.close()
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            names = [name async for name in client.scan_iter(match=f"{prefix}*", count=1000)]
            if names:
                await client.delete(*names)
        finally:
            await client.aclose()


def _claim(key_id: str, kind: str) -> Claim:
    if kind == "plain":
        return Claim(key_id=key_id, organization_id="default", amount=BOUND, project_id="default")
    return Claim(
        key_id=key_id,
        organization_id="default",
        amount=BOUND,
        project_id="default",
        key_budget=BudgetWindow(amount=Decimal(HIGH), start="2026-12-07T00:00:00Z"),
        key_limits=RateLimits(rpm=HIGH, tpm=HIGH, max_parallel=HIGH),
        tokens=60,
        now=time.time(),
    )


async def _measure(
    backend: str, work_dir: Path, requests: int, concurrency: int, kind: str
) -> tuple[float, float]:
    async with _opened(backend, work_dir) as store:
        await store.migrate()
        await store.ensure_defaults()
        await store.set_credits("default", Decimal("1000000000"))
        limit = None if kind == "plain" else Decimal(HIGH)
        key, _ = await store.create_key("default", limit, "bench")
        admission = Admission(store)
        claim = _claim(key.id, kind)

        async def one() -> None:
            reservation = await admission.reserve(claim)
            assert isinstance(reservation, Reservation)
            await asyncio.sleep(0)
            await admission.settle(reservation, COST, tokens=10)

        for _ in range(WARM_UP):
            await one()
        each = requests // concurrency

        async def loop() -> None:
            for _ in range(each):
                await one()

        started = time.process_time()
        wall = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        done = each * concurrency
        return (time.process_time() - started) / done, (time.perf_counter() - wall) / done


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    backend = sys.argv[3] if len(sys.argv) > 3 else "sqlite"
    kind = sys.argv[4] if len(sys.argv) > 4 else "plain"
    if backend not in BACKENDS:
        raise SystemExit(f"unknown backend `{backend}`; use one of {', '.join(BACKENDS)}")
    if kind not in KEYS:
        raise SystemExit(f"unknown key `{kind}`; use one of {', '.join(KEYS)}")
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = uvloop.run(_measure(backend, Path(tmp), requests, concurrency, kind))
    where = os.environ.get("PYTHONPATH", "this checkout")
    print(
        f"{where} [{backend}, {kind} key]: {cpu * 1e6:.1f} µs CPU, {wall * 1e6:.1f} µs wall "
        f"per request at {concurrency} concurrent"
    )


if __name__ == "__main__":
    main()
