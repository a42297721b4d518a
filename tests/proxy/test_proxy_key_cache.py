"""The key cache (`proxy/key_cache.py`): what it serves from memory, what it never does,
and the contract's revocation bound with the cache on (a key disabled through the CLI
in another process is refused within 1 s on the cached request path)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import cast

import httpx
import pytest
from proxy_deployment import Deployment
from proxy_helpers import MSG_INVALID, auth, key_context, make_tenant

from proxy.key_cache import KeyCachingStore
from proxy.store.base import (
    ApiKey,
    KeyContext,
    KeyStatus,
    Store,
    WindowUsage,
)

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


def _context(status: KeyStatus = "active") -> KeyContext:
    return key_context(status=status)


class CountingStore:
    """Just the calls the cache makes; counts store reads of key records."""

    def __init__(self) -> None:
        self.reads = 0
        self.status: KeyStatus = "active"
        self.gate: asyncio.Event | None = None
        self.budget_reads = 0
        self.budget_spent = Decimal(0)

    async def key_context(self, token_hash: str) -> KeyContext | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return _context(self.status) if token_hash == "hash-1" else None

    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey:
        self.status = status
        return _context(status).key

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        self.budget_reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return WindowUsage(usage=self.budget_spent), WindowUsage()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cache(inner: CountingStore, clock: FakeClock) -> KeyCachingStore:
    return KeyCachingStore(cast(Store, inner), ttl=0.5, clock=clock)


def test_a_record_is_served_from_memory_until_it_expires() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> None:
        first = await cache.key_context("hash-1")
        clock.now += 0.3  # before the refresh ahead (80% of the ttl)
        assert await cache.key_context("hash-1") is first
        await asyncio.sleep(0)
        assert inner.reads == 1
        clock.now += 0.3  # 0.6 s after the read: past the ttl
        await cache.key_context("hash-1")
        assert inner.reads == 2

    asyncio.run(scenario())


def test_fresh_reads_and_unknown_tokens_always_reach_the_store() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> None:
        await cache.key_context("hash-1")
        await cache.key_context("hash-1", fresh=True)
        assert inner.reads == 2
        assert await cache.key_context("unknown") is None
        assert await cache.key_context("unknown") is None
        assert inner.reads == 4

    asyncio.run(scenario())


def test_an_admin_change_in_this_process_drops_the_cache_at_once() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> None:
        assert (await cache.key_context("hash-1")) is not None
        await cache.set_key_status("key-1", "inactive")
        seen = await cache.key_context("hash-1")
        assert seen is not None and seen.key.status == "inactive"

    asyncio.run(scenario())


def test_concurrent_misses_share_one_store_read() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> list[KeyContext | None]:
        inner.gate = asyncio.Event()
        readers = [asyncio.create_task(cache.key_context("hash-1")) for _ in range(10)]
        await asyncio.sleep(0)
        inner.gate.set()
        return await asyncio.gather(*readers)

    contexts = asyncio.run(scenario())
    assert inner.reads == 1
    assert all(c is contexts[0] and c is not None for c in contexts)


def test_recent_budget_figures_are_kept_per_window_and_never_for_a_live_read() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)
    today = ("key-1", "2027-01-01T00:00:00Z"), None
    tomorrow = ("key-1", "2027-01-02T00:00:00Z"), None

    async def scenario() -> None:
        await cache.recent_budget_usage(*today)
        inner.budget_spent = Decimal(3)
        clock.now += 0.3  # before the refresh ahead (80% of the ttl)
        stale, _ = await cache.recent_budget_usage(*today)
        assert stale.usage == 0 and inner.budget_reads == 1
        # The live read (admin surfaces, every refusal) always reaches the store.
        live, _ = await cache.budget_usage(*today)
        assert live.usage == 3 and inner.budget_reads == 2
        # Another window is another entry: never answered with this one's figures.
        other, _ = await cache.recent_budget_usage(*tomorrow)
        assert other.usage == 3 and inner.budget_reads == 3
        clock.now += 0.3  # past the ttl
        again, _ = await cache.recent_budget_usage(*today)
        assert again.usage == 3 and inner.budget_reads == 4
        inner.budget_spent = Decimal(5)
        await cache.set_key_status("key-1", "active")  # an admin change drops them too
        after, _ = await cache.recent_budget_usage(*today)
        assert after.usage == 5 and inner.budget_reads == 5

    asyncio.run(scenario())


def test_concurrent_budget_misses_share_one_store_read() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)
    subjects = ("key-1", "2027-01-01T00:00:00Z"), ("default", "2027-01-01T00:00:00Z")

    async def scenario() -> None:
        inner.gate = asyncio.Event()
        readers = [asyncio.create_task(cache.recent_budget_usage(*subjects)) for _ in range(10)]
        await asyncio.sleep(0)
        inner.gate.set()
        await asyncio.gather(*readers)

    asyncio.run(scenario())
    assert inner.budget_reads == 1


def test_a_record_in_use_is_read_again_ahead_of_its_expiry() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> None:
        first = await cache.key_context("hash-1")
        clock.now += 0.3  # 60% of the ttl: just served
        assert await cache.key_context("hash-1") is first
        await asyncio.sleep(0)
        assert inner.reads == 1
        clock.now += 0.15  # 90%: still served, and read again in the background, once
        inner.gate = asyncio.Event()
        inner.status = "inactive"
        assert await cache.key_context("hash-1") is first
        assert await cache.key_context("hash-1") is first
        await asyncio.sleep(0)
        assert inner.reads == 2
        inner.gate.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        clock.now += 0.1  # past the first read's ttl: the new record, without a read
        seen = await cache.key_context("hash-1")
        assert seen is not None and seen.key.status == "inactive"
        assert inner.reads == 2

    asyncio.run(scenario())


def test_a_record_is_never_served_past_its_ttl_while_the_refresh_is_slow() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> None:
        first = await cache.key_context("hash-1")
        inner.gate = asyncio.Event()
        inner.status = "inactive"
        clock.now += 0.45
        assert await cache.key_context("hash-1") is first  # starts the background read
        await asyncio.sleep(0)
        clock.now += 0.1  # past the ttl, the background read still under way
        waiting = asyncio.create_task(cache.key_context("hash-1"))
        await asyncio.sleep(0)
        assert not waiting.done()  # it joined the read under way
        inner.gate.set()
        seen = await waiting
        assert seen is not None and seen.key.status == "inactive"
        assert inner.reads == 2

    asyncio.run(scenario())


class FailingStore(CountingStore):
    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def key_context(self, token_hash: str) -> KeyContext | None:
        context = await super().key_context(token_hash)
        if self.failing:
            raise ConnectionError("the database is down")
        return context


def test_a_failed_background_read_leaves_the_record_to_expire() -> None:
    inner, clock = FailingStore(), FakeClock()
    cache = _cache(inner, clock)

    async def scenario() -> None:
        first = await cache.key_context("hash-1")
        inner.failing = True
        clock.now += 0.45
        assert await cache.key_context("hash-1") is first
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert inner.reads == 2
        clock.now += 0.04  # still within the ttl: served, and tried again
        assert await cache.key_context("hash-1") is first
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        clock.now += 0.02  # past it: the request reads, and meets the error
        with pytest.raises(ConnectionError):
            await cache.key_context("hash-1")

    asyncio.run(scenario())


def test_close_stops_a_background_read() -> None:
    inner, clock = CountingStore(), FakeClock()
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    inner.close = close  # type: ignore[attr-defined]
    cache = _cache(inner, clock)

    async def scenario() -> None:
        await cache.key_context("hash-1")
        inner.gate = asyncio.Event()  # never set: the background read would hang
        clock.now += 0.45
        await cache.key_context("hash-1")
        await asyncio.sleep(0)
        await asyncio.wait_for(cache.close(), 5)

    asyncio.run(scenario())
    assert closed == [True]


def test_recent_budget_figures_in_use_are_read_again_ahead_of_their_expiry() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)
    today = ("key-1", "2027-01-01T00:00:00Z"), None

    async def scenario() -> None:
        await cache.recent_budget_usage(*today)
        inner.budget_spent = Decimal(3)
        clock.now += 0.45
        stale, _ = await cache.recent_budget_usage(*today)
        assert stale.usage == 0
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert inner.budget_reads == 2
        clock.now += 0.1
        fresh, _ = await cache.recent_budget_usage(*today)
        assert fresh.usage == 3 and inner.budget_reads == 2

    asyncio.run(scenario())


def test_held_budget_figures_are_answered_without_a_coroutine() -> None:
    inner, clock = CountingStore(), FakeClock()
    cache = _cache(inner, clock)
    today = ("key-1", "2027-01-01T00:00:00Z"), None
    tomorrow = ("key-1", "2027-01-02T00:00:00Z"), None

    async def scenario() -> None:
        assert cache.cached_budget_usage(today) is None  # not read yet: the caller awaits
        read = await cache.recent_budget_usage(*today)
        assert cache.cached_budget_usage(today) is read
        assert cache.cached_budget_usage(tomorrow) is None  # another window, never this one's
        inner.budget_spent = Decimal(3)
        clock.now += 0.45  # past the refresh ahead: still served, read again behind it
        held = cache.cached_budget_usage(today)
        assert held is read
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert inner.budget_reads == 2
        refreshed = cache.cached_budget_usage(today)
        assert refreshed is not None and refreshed[0].usage == 3
        clock.now += 0.6  # past the ttl of the refreshed figures
        assert cache.cached_budget_usage(today) is None
        assert inner.budget_reads == 2

    asyncio.run(scenario())


def test_no_budget_figures_are_held_with_the_cache_off() -> None:
    inner = CountingStore()
    cache = KeyCachingStore(cast(Store, inner), ttl=0)
    today = ("key-1", "2027-01-01T00:00:00Z"), None

    async def scenario() -> None:
        await cache.recent_budget_usage(*today)
        assert cache.cached_budget_usage(today) is None
        await cache.recent_budget_usage(*today)
        assert inner.budget_reads == 2

    asyncio.run(scenario())


def test_a_ttl_beyond_the_revocation_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="1 s"):
        KeyCachingStore(cast(Store, CountingStore()), ttl=2.0)


def test_a_key_disabled_through_the_cli_is_refused_within_one_second(
    deployment: Deployment,
) -> None:
    tenant = make_tenant(deployment.admin)
    url = f"{deployment.url}/v1/chat/completions"
    headers = auth(tenant.token, "bearer")
    with httpx.Client(timeout=10) as client:
        # Warm the cache: this record is now held in memory by the gateway.
        assert client.post(url, json=CHAT, headers=headers).status_code == 200
        assert client.post(url, json=CHAT, headers=headers).status_code == 200
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["GATEWAY_DATABASE"] = f"sqlite:///{deployment.admin.path}"
        env["PYTHONPATH"] = str(REPO)
        subprocess.run(
            [sys.executable, "-m", "proxy.cli", "keys", "disable", tenant.key.id, "--json"],
            check=True,
            capture_output=True,
            env=env,
            timeout=60,
        )
        disabled_at = time.monotonic()
        answer = client.post(url, json=CHAT, headers=headers)
        while answer.status_code == 200 and time.monotonic() - disabled_at <= 1.0:
            time.sleep(0.02)
            answer = client.post(url, json=CHAT, headers=headers)
        # Refused before the contract's 1 s bound ran out, with the documented answer.
        assert answer.status_code == 401
        assert answer.json()["message"] == MSG_INVALID
