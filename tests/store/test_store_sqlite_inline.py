"""SQLite request-path calls run inline on the event loop and never block it: while
another connection holds the write lock they wait on the store's worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

from proxy.store.sqlite import SqliteStore


def test_a_held_write_lock_sends_the_call_to_the_worker_and_the_loop_keeps_running(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "gateway.db")

    async def body() -> tuple[bool, Decimal, Decimal]:
        store = SqliteStore(path)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, _ = await store.create_key("default", Decimal("1.00"), "inline")
            warm = await store.reserve(key.id, None, Decimal("0.01"))  # opens the inline conn
            assert warm is not None
            await store.release(warm)
            # Another writer (as the admin CLI would be) holds the lock; only the event
            # loop can let it go, so an inline call that waited here would never return.
            other.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(0.1, other.execute, "COMMIT")
            reservation = await store.reserve(key.id, "default", Decimal("0.10"))
            assert reservation is not None
            other.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(0.1, other.execute, "COMMIT")
            await store.settle(reservation, Decimal("0.05"))
            context = await store.key_context(key.token_hash)
            assert context is not None
            return other.in_transaction, context.key.usage, context.reserved
        finally:
            other.close()
            await store.close()

    still_locked, usage, reserved = asyncio.run(body())
    assert not still_locked
    assert usage == Decimal("0.05")
    assert reserved == 0
