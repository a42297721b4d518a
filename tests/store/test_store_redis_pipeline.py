"""The Redis ledger sends the request path's script calls of one event-loop turn as
one pipeline; each call still succeeds or fails on its own, a reservation whose
caller left is released, and a Redis that lost its script cache is recovered from.
Each test runs on both paths: the ledger's own connection (a plain `redis://` URL) and
redis-py's pipeline (a URL with a connection option, which the former does not read)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from store_backends import REDIS_HOST, REDIS_PORT, Backend

from proxy.store import redis_batch, resp
from proxy.store.base import NotFound, Reservation, Store
from proxy.store.resp import endpoint_from_url

COST = Decimal("0.01")


@pytest.fixture(params=["resp", "redis-py"])
def redis_backend(request: pytest.FixtureRequest, redis_backend: Backend) -> Iterator[Backend]:
    assert redis_backend.usage_store_url is not None
    if request.param == "resp":
        assert endpoint_from_url(redis_backend.usage_store_url) is not None
        yield redis_backend
        return
    url = f"{redis_backend.usage_store_url}?socket_keepalive=true"
    assert endpoint_from_url(url) is None
    yield dataclasses.replace(redis_backend, usage_store_url=url)


async def _store_with_key(backend: Backend) -> tuple[Store, str, str]:
    store = backend.open()
    await store.migrate()
    await store.ensure_defaults()
    await store.set_credits("default", Decimal("1000"))
    key, _ = await store.create_key("default", Decimal("100"), "pipeline")
    return store, key.id, key.token_hash


async def _reserved(store: Store, token_hash: str) -> tuple[Decimal, Decimal]:
    context = await store.key_context(token_hash)
    assert context is not None
    return context.key.usage, context.reserved


def _record_writes(backend: Backend, monkeypatch: pytest.MonkeyPatch, writes: list[int]) -> None:
    """Record how many script calls go to Redis in each write: on the ledger's own
    connection, each `RespConnection.send`; on redis-py's, each pipeline."""
    if endpoint_from_url(backend.usage_store_url or "") is not None:
        original_send = resp.RespConnection.send

        def sending(self: resp.RespConnection, commands: Any, replies: Any) -> None:
            writes.append(len(commands))
            original_send(self, commands, replies)

        monkeypatch.setattr(resp.RespConnection, "send", sending)
        return
    original = redis_batch.ScriptBatcher._dispatch

    def recording(self: redis_batch.ScriptBatcher, batch: list[Any]) -> None:
        writes.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(redis_batch.ScriptBatcher, "_dispatch", recording)


def test_calls_of_one_turn_share_one_pipeline_and_fail_alone(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    _record_writes(redis_backend, monkeypatch, writes)

    async def body() -> tuple[list[Any], Decimal, Decimal]:
        store, key_id, token_hash = await _store_with_key(redis_backend)
        try:
            await _reserved(store, token_hash)  # loads the key into Redis
            writes.clear()
            outcomes = await asyncio.gather(
                *[store.reserve(key_id, "default", COST) for _ in range(10)],
                store.reserve("no-such-key", None, COST),
                return_exceptions=True,
            )
            reservations = [o for o in outcomes if isinstance(o, Reservation)]
            await asyncio.gather(*[store.settle(r, COST) for r in reservations])
            usage, reserved = await _reserved(store, token_hash)
            return outcomes, usage, reserved
        finally:
            await store.close()

    outcomes, usage, reserved = redis_backend.run(body)
    assert sum(isinstance(o, Reservation) for o in outcomes) == 10
    assert isinstance(outcomes[-1], NotFound)
    assert usage == Decimal("0.10")
    assert reserved == 0
    if endpoint_from_url(redis_backend.usage_store_url or "") is not None:
        # The ledger's own connection writes the first call made while it waits for no
        # reply at once; the rest of that turn's 11 reservations go in one write, and
        # likewise for the 10 settlements.
        assert writes[:4] == [1, 10, 1, 9]
    else:
        # 11 reservations in one pipeline, 10 settlements in another.
        assert writes[:2] == [11, 10]


# The ledger's own connection only: redis-py's pipeline is sent from a task of its own.
@pytest.mark.parametrize("redis_backend", ["resp"], indirect=True)
def test_a_call_on_an_idle_connection_waits_for_no_turn(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request at a time: its call is written in the step that makes it, not one
    event-loop turn later (that turn batched nothing and only added latency)."""
    writes: list[int] = []
    _record_writes(redis_backend, monkeypatch, writes)

    async def body() -> tuple[list[int], Decimal, Decimal]:
        store, key_id, token_hash = await _store_with_key(redis_backend)
        try:
            await _reserved(store, token_hash)
            seen = []
            for _ in range(3):
                writes.clear()
                reserving = asyncio.ensure_future(store.reserve(key_id, "default", COST))
                await asyncio.sleep(0)  # the reservation's first step runs, then this one
                seen.append(len(writes))
                reservation = await reserving
                assert reservation is not None
                writes.clear()
                settling = asyncio.ensure_future(store.settle(reservation, COST))
                await asyncio.sleep(0)
                seen.append(len(writes))
                await settling
                # The settlement returns once written; the next request of one at a time
                # comes after its reply (a read waits for it): the connection is idle.
                await store.get_key(key_id)
            usage, reserved = await _reserved(store, token_hash)
            return seen, usage, reserved
        finally:
            await store.close()

    seen, usage, reserved = redis_backend.run(body)
    assert seen == [1] * 6
    assert usage == 3 * COST
    assert reserved == 0


def test_a_reservation_whose_caller_left_is_released(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = redis_batch.ScriptBatcher._deliver

    def slow(self: redis_batch.ScriptBatcher, call: Any, reply: Any) -> None:
        # The script has run; its reply reaches the caller only after it left.
        asyncio.get_running_loop().call_later(0.05, original, self, call, reply)

    async def body() -> Decimal:
        store, key_id, token_hash = await _store_with_key(redis_backend)
        try:
            await _reserved(store, token_hash)
            monkeypatch.setattr(redis_batch.ScriptBatcher, "_deliver", slow)
            task = asyncio.ensure_future(store.reserve(key_id, "default", COST))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.2)  # the reply arrives, then the release
            monkeypatch.setattr(redis_batch.ScriptBatcher, "_deliver", original)
            return (await _reserved(store, token_hash))[1]
        finally:
            await store.close()

    assert redis_backend.run(body) == 0


def test_a_redis_that_lost_its_scripts_still_reserves_and_settles(
    redis_backend: Backend,
) -> None:
    async def body() -> tuple[Decimal, Decimal]:
        store, key_id, token_hash = await _store_with_key(redis_backend)
        try:
            await _reserved(store, token_hash)
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
            try:
                client.script_flush()  # as after a Redis restart
            finally:
                client.close()
            reservation = await store.reserve(key_id, "default", COST)
            assert reservation is not None
            await store.settle(reservation, COST)
            return await _reserved(store, token_hash)
        finally:
            await store.close()

    usage, reserved = redis_backend.run(body)
    assert usage == COST
    assert reserved == 0


# The ledger's own connection only: redis-py's pipeline is sent from a task of its own.
@pytest.mark.parametrize("redis_backend", ["resp"], indirect=True)
def test_a_settlement_on_an_idle_connection_returns_once_written(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request at a time: the settlement's reply is not waited for (a Redis round
    trip less before the answer), yet every later read of this process sees it."""
    replies: list[int] = []
    original = resp._Protocol.data_received

    def receiving(self: resp._Protocol, data: bytes) -> None:
        replies.append(len(data))
        original(self, data)

    async def body() -> tuple[list[int], Decimal, Decimal, Decimal, Decimal]:
        store, key_id, token_hash = await _store_with_key(redis_backend)
        try:
            await _reserved(store, token_hash)
            reservation = await store.reserve(key_id, "default", COST)
            assert reservation is not None
            monkeypatch.setattr(resp._Protocol, "data_received", receiving)
            await store.settle(reservation, COST)
            received = list(replies)  # none yet: settle returned before its reply
            key = await store.get_key(key_id)  # through redis-py: waits for the reply
            organization = await store.get_organization("default")
            usage, reserved = await _reserved(store, token_hash)
            return received, key.usage, organization.credits, usage, reserved
        finally:
            await store.close()

    received, key_usage, credits, usage, reserved = redis_backend.run(body)
    assert received == []
    assert key_usage == COST
    assert credits == Decimal("1000") - COST
    assert usage == COST
    assert reserved == 0


@pytest.mark.parametrize("redis_backend", ["resp"], indirect=True)
def test_a_settlement_lost_after_its_write_is_logged(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody waits for the reply of a settlement written at once: when the connection
    fails before it comes, the unknown outcome is logged, not lost silently."""

    async def body() -> None:
        store, key_id, token_hash = await _store_with_key(redis_backend)
        try:
            await _reserved(store, token_hash)
            reservation = await store.reserve(key_id, "default", COST)
            assert reservation is not None
            original = resp.RespConnection.send

            def sending_then_failing(
                self: resp.RespConnection, commands: Any, replies: Any
            ) -> None:
                original(self, commands, replies)
                self._protocol.connection_lost(ConnectionResetError("reset"))

            monkeypatch.setattr(resp.RespConnection, "send", sending_then_failing)
            await store.settle(reservation, COST)  # returns: written
            monkeypatch.setattr(resp.RespConnection, "send", original)
            await store.get_key(key_id)  # waits for the (failed) reply
        finally:
            await store.close()

    with caplog.at_level("WARNING", logger="gateway.store"):
        redis_backend.run(body)
    assert any("may not have been applied" in r.getMessage() for r in caplog.records)
