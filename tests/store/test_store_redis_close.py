"""Closing the Redis ledger while its background flush is under way: close() waits for
that flush, writes what is left and returns. The flusher used to be cancelled; a
cancellation landing inside a redis-py call can surface as a RedisError, which the
flusher's retry swallowed, so it kept looping and close() waited forever (a CI run hung
for ten minutes in `test_store_ledger`)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.exceptions
from store_backends import Backend

from proxy.store.redis_ledger import RedisLedgerStore

COST = Decimal("0.01")

# Without the fix close() never returns and swallows wait_for's cancellation too, so
# only a whole-test timeout turns the hang into a failure.
pytestmark = pytest.mark.timeout(60)


def test_close_returns_while_a_flush_is_under_way(
    redis_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    original_flush = RedisLedgerStore.flush

    async def slow_flush(self: RedisLedgerStore) -> int:
        """A flush that takes a while and turns a cancellation into a RedisError, as a
        redis-py call interrupted mid-command can."""
        started.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            raise redis.exceptions.ConnectionError("interrupted") from None
        return await original_flush(self)

    monkeypatch.setattr(RedisLedgerStore, "flush", slow_flush)

    async def body() -> Decimal:
        store = redis_backend.open()
        await store.migrate()
        await store.ensure_defaults()
        key, _ = await store.create_key("default", Decimal("1"), "close")
        reservation = await store.reserve(key.id, None, COST)
        assert reservation is not None
        await store.settle(reservation, COST)
        await started.wait()  # the background flush is under way
        await asyncio.wait_for(store.close(), 10)
        reopened = redis_backend.open()
        try:
            return (await reopened.get_key(key.id)).usage
        finally:
            await reopened.close()

    assert redis_backend.run(body) == COST  # the settled cost reached PostgreSQL
