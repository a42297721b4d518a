"""Several processes on one ledger, `kill -9`, Redis data loss, and the revocation bound."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from store_backends import REDIS_HOST, REDIS_PORT, Backend

from proxy.store import Store
from proxy.store.postgres import PostgresStore

WORKER = Path(__file__).with_name("ledger_worker.py")
REPO = Path(__file__).resolve().parents[2]
COST = "0.01"


def _worker(command: str, backend: Backend, **config: Any) -> subprocess.Popen[str]:
    payload = {
        "database": backend.database_url,
        "usage_store": backend.usage_store_url,
        "options": {**backend.options, **config.pop("options", {})},
        "cost": COST,
        **config,
    }
    return subprocess.Popen(
        [sys.executable, str(WORKER), command, json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def _new_key(store: Store, limit: Decimal | None) -> str:
    await store.ensure_defaults()
    key, _ = await store.create_key("default", limit, "process test")
    return key.id


def test_two_processes_hold_the_limit_exactly(shared_backend: Backend) -> None:
    async def setup() -> str:
        store = shared_backend.open()
        try:
            await store.migrate()
            return await _new_key(store, Decimal("1.00"))
        finally:
            await store.close()

    key_id = shared_backend.run(setup)
    start_at = time.time() + 2.0  # both processes fire their burst at the same moment
    workers = [
        _worker("burst", shared_backend, key_id=key_id, n=100, start_at=start_at) for _ in range(2)
    ]
    admitted = 0
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        admitted += json.loads(out)["admitted"]

    async def drain() -> tuple[int, Decimal]:
        store = shared_backend.open()
        try:
            await store.migrate()
            extra = 0
            while (reservation := await store.reserve(key_id, None, Decimal(COST))) is not None:
                await store.settle(reservation, Decimal(COST))
                extra += 1
            return extra, (await store.get_key(key_id)).usage
        finally:
            await store.close()

    extra, usage = shared_backend.run(drain)
    assert admitted + extra == 100
    assert usage == Decimal("1.00")


def test_kill_9_keeps_settled_usage_and_reclaims_leaked_reservations(backend: Backend) -> None:
    ttl = 1.5

    async def setup() -> str:
        store = backend.open(reservation_ttl=ttl)
        try:
            await store.migrate()
            return await _new_key(store, Decimal("0.20"))
        finally:
            await store.close()

    key_id = backend.run(setup)
    worker = _worker(
        "hold", backend, key_id=key_id, n=20, settle=10, options={"reservation_ttl": ttl}
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    killed_at = time.monotonic()
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL

    async def after_restart() -> None:
        store = backend.open(reservation_ttl=ttl)
        try:
            await store.migrate()
            key = await store.get_key(key_id)
            assert key.usage == Decimal("0.10")  # the ten completed requests are all there
            # 0.10 settled + 0.10 leaked = the limit: refused until the leak expires.
            if time.monotonic() - killed_at < ttl - 0.3:
                assert await store.reserve(key_id, None, Decimal(COST)) is None
            await asyncio.sleep(max(0.0, ttl + 0.2 - (time.monotonic() - killed_at)))
            await store.reclaim_expired()
            admitted = 0
            while (reservation := await store.reserve(key_id, None, Decimal(COST))) is not None:
                await store.settle(reservation, Decimal(COST))
                admitted += 1
            assert admitted == 10
            assert (await store.get_key(key_id)).usage == Decimal("0.20")
        finally:
            await store.close()

    backend.run(after_restart)


def test_a_disabled_key_is_refused_by_another_instance_within_one_second(
    backend: Backend,
) -> None:
    async def body() -> float:
        instance_a = backend.open()
        instance_b = backend.open()
        try:
            await instance_a.migrate()
            await instance_b.migrate()
            await instance_a.ensure_defaults()
            key, token = await instance_a.create_key("default", None, "")
            token_hash = instance_b.hash_token(token)
            before = await instance_b.key_context(token_hash)
            assert before is not None and before.key.status == "active"
            disabled_at = time.monotonic()
            await instance_a.set_key_status(key.id, "inactive")
            while True:
                seen = await instance_b.key_context(token_hash)
                assert seen is not None
                if seen.key.status == "inactive":
                    return time.monotonic() - disabled_at
                await asyncio.sleep(0.01)
        finally:
            await instance_a.close()
            await instance_b.close()

    elapsed = backend.run(body)
    assert elapsed <= 1.0  # the contract's bound


def test_redis_data_loss_loses_nothing_flushed(redis_backend: Backend) -> None:
    backend = redis_backend
    # No background flush during the test: flushes happen exactly where we call them.
    backend.options["flush_interval"] = 3600.0

    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            key_id = await _new_key(store, Decimal("1.00"))
            for _ in range(7):
                reservation = await store.reserve(key_id, "default", Decimal(COST))
                assert reservation is not None
                await store.settle(reservation, Decimal(COST))
            assert await store.flush() == 1  # type: ignore[attr-defined]
            for _ in range(2):  # settled after the last flush: within the documented bound
                reservation = await store.reserve(key_id, "default", Decimal(COST))
                assert reservation is not None
                await store.settle(reservation, Decimal(COST))
            assert (await store.get_key(key_id)).usage == Decimal("0.09")
            _lose_redis_data(backend.options["redis_prefix"])
            assert (await store.get_key(key_id)).usage == Decimal("0.07")
            assert (await store.get_organization("default")).credits == Decimal("9.93")
            # The ledger reloads from PostgreSQL and keeps holding the limit exactly.
            admitted = 0
            while (reservation := await store.reserve(key_id, None, Decimal(COST))) is not None:
                await store.settle(reservation, Decimal(COST))
                admitted += 1
            assert admitted == 93
        finally:
            await store.close()
        durable = PostgresStore(backend.database_url)
        try:
            assert (await durable.get_key(key_id)).usage == Decimal("1.00")
        finally:
            await durable.close()

    backend.run(body)


def test_background_flush_reaches_postgres(redis_backend: Backend) -> None:
    backend = redis_backend

    async def body() -> None:
        store = backend.open(flush_interval=0.1)
        durable = PostgresStore(backend.database_url)
        try:
            await store.migrate()
            key_id = await _new_key(store, None)
            reservation = await store.reserve(key_id, None, Decimal("0.50"))
            assert reservation is not None
            await store.settle(reservation, Decimal("0.25"))
            for _ in range(100):
                if (await durable.get_key(key_id)).usage == Decimal("0.25"):
                    break
                await asyncio.sleep(0.05)
            assert (await durable.get_key(key_id)).usage == Decimal("0.25")
        finally:
            await store.close()
            await durable.close()

    backend.run(body)


def _lose_redis_data(prefix: str) -> None:
    """What a Redis restart without persistence does to our keys."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        assert keys
        client.delete(*keys)
    finally:
        client.close()


pytestmark = pytest.mark.timeout(120)
