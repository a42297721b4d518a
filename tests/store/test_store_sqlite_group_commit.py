"""SQLite request-path writes of one event-loop turn commit together (group commit),
each still succeeding or failing on its own, writes never wait for an ordinary WAL
checkpoint, and the WAL stays bounded under a steady stream of writes."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from proxy.store import sqlite as sqlite_module
from proxy.store import sqlite_batch
from proxy.store.base import Admitted, Claim, NotFound, Reservation
from proxy.store.sqlite import SqliteStore

COST = Decimal("0.01")


async def _store_with_key(path: str, limit: Decimal | None = None) -> tuple[SqliteStore, str]:
    store = SqliteStore(path)
    await store.migrate()
    await store.ensure_defaults()
    await store.set_credits("default", Decimal("1000000"))
    key, _ = await store.create_key("default", limit, "group-commit")
    return store, key.id


async def _usage_and_reserved(store: SqliteStore, key_id: str) -> tuple[Decimal, Decimal]:
    key = await store.get_key(key_id)
    context = await store.key_context(key.token_hash)
    assert context is not None
    return context.key.usage, context.reserved


def _record_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    original = sqlite_batch.run_in_transaction

    def recording(
        conn: sqlite3.Connection, writes: list[Any], *folding: Any
    ) -> list[sqlite_batch.Outcome]:
        sizes.append(len(writes))
        return original(conn, writes, *folding)

    monkeypatch.setattr("proxy.store.sqlite.run_in_transaction", recording)
    return sizes


def test_writes_of_one_turn_share_one_transaction_and_fail_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _record_batches(monkeypatch)

    async def body() -> tuple[list[Any], Decimal, Decimal, list[int]]:
        store, key_id = await _store_with_key(str(tmp_path / "gateway.db"))
        try:
            # Another request in flight: the store is not serving one request alone.
            held = await store.reserve(key_id, "default", COST)
            assert held is not None
            outcomes = await asyncio.gather(
                *[store.reserve(key_id, "default", COST) for _ in range(10)],
                store.reserve("no-such-key", None, COST),
                return_exceptions=True,
            )
            reservations = [r for r in outcomes if isinstance(r, Reservation)]
            await asyncio.gather(*[store.settle(r, COST) for r in reservations])
            batches = sizes[-2:]
            await store.release(held)
            usage, reserved = await _usage_and_reserved(store, key_id)
            return outcomes, usage, reserved, batches
        finally:
            await store.close()

    outcomes, usage, reserved, batches = asyncio.run(body())
    assert sum(isinstance(o, Reservation) for o in outcomes) == 10
    assert isinstance(outcomes[-1], NotFound)  # the unknown key fails alone
    assert usage == Decimal("0.10")  # ten settlements, none lost to the failing write
    assert reserved == 0
    # 11 reservations in one transaction, then 10 settlements in another.
    assert batches == [11, 10]


def test_a_write_with_no_other_request_in_flight_commits_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One request at a time, a write has nothing to be grouped with: it commits in its
    # caller's turn of the loop (no turn waiting for the flush, none for the wake-up).
    # With other requests in flight, the writes of one turn share a commit again.
    path = tmp_path / "gateway.db"
    sizes = _record_batches(monkeypatch)

    async def body() -> tuple[bool, int, list[int], bool, Decimal, Decimal]:
        store, key_id = await _store_with_key(str(path))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            turns: list[None] = []
            asyncio.get_running_loop().call_soon(turns.append, None)
            first = await store.reserve(key_id, "default", COST)
            at_once = not turns
            (rows,) = other.execute("SELECT COUNT(*) FROM reservations").fetchone()
            assert first is not None
            before = len(sizes)
            more = await asyncio.gather(*[store.reserve(key_id, "default", COST) for _ in range(3)])
            await asyncio.gather(*[store.settle(r, COST) for r in [first, *more] if r is not None])
            grouped = sizes[before:]
            turns.clear()
            asyncio.get_running_loop().call_soon(turns.append, None)
            alone = await store.reserve(key_id, "default", COST)
            assert alone is not None
            await store.settle(alone, COST)
            settled_at_once = not turns
            usage, reserved = await _usage_and_reserved(store, key_id)
            return at_once, rows, grouped, settled_at_once, usage, reserved
        finally:
            other.close()
            await store.close()

    at_once, rows, grouped, settled_at_once, usage, reserved = asyncio.run(body())
    assert at_once
    assert rows == 1  # committed: another connection sees it
    assert grouped == [3, 4]  # three reservations, then four settlements, one commit each
    assert settled_at_once
    assert usage == Decimal("0.05")
    assert reserved == 0


def test_a_caller_cancelled_before_the_commit_writes_nothing(tmp_path: Path) -> None:
    async def body() -> Decimal:
        store, key_id = await _store_with_key(str(tmp_path / "gateway.db"), Decimal("1.00"))
        try:
            # Another request in flight, so the write waits for the group commit.
            held = await store.reserve(key_id, "default", COST)
            assert held is not None
            task = asyncio.ensure_future(store.reserve(key_id, "default", COST))
            await asyncio.sleep(0)  # queued for this turn's commit
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.01)
            await store.release(held)
            return (await _usage_and_reserved(store, key_id))[1]
        finally:
            await store.close()

    assert asyncio.run(body()) == 0


def test_a_reservation_whose_caller_left_during_the_commit_is_released(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.db")

    async def body() -> tuple[Decimal, Decimal]:
        store, key_id = await _store_with_key(path, Decimal("1.00"))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            warm = await store.reserve(key_id, None, COST)  # opens the inline connection
            assert warm is not None
            await store.release(warm)
            # Another writer holds the lock, so the batch waits on the worker thread...
            other.execute("BEGIN IMMEDIATE")
            task = asyncio.ensure_future(store.reserve(key_id, "default", COST))
            await asyncio.sleep(0.05)
            task.cancel()  # ...and the caller gives up meanwhile.
            other.execute("COMMIT")
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.2)
            _, reserved = await _usage_and_reserved(store, key_id)
            rows = other.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
            return reserved, Decimal(rows)
        finally:
            other.close()
            await store.close()

    reserved, rows = asyncio.run(body())
    assert reserved == 0
    assert rows == 0


def test_writes_queued_when_the_store_closes_are_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "gateway.db")

    async def body() -> str:
        store, key_id = await _store_with_key(path)
        reservation = await store.reserve(key_id, None, COST)
        assert reservation is not None
        # Another request in flight, so the settlement waits for the group commit.
        assert await store.reserve(key_id, None, COST) is not None
        pending = asyncio.ensure_future(store.settle(reservation, Decimal("0.25")))
        await asyncio.sleep(0)  # queued, not yet flushed
        await store.close()
        await pending
        return key_id

    key_id = asyncio.run(body())
    with sqlite3.connect(path) as conn:
        (usage,) = conn.execute("SELECT usage FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    assert Decimal(usage) == Decimal("0.25")


def _writes_on_the_worker(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """The batches that went to the worker thread instead of inline: their size, and
    whether a blocking checkpoint was under way when they did."""
    batches: list[tuple[int, bool]] = []
    original = SqliteStore._flush_on_worker

    def recording(self: SqliteStore, batch: list[Any], sweep: bool = False, *rest: Any) -> None:
        batches.append((len(batch), self._writes_wait_for_checkpoint))
        original(self, batch, sweep, *rest)

    monkeypatch.setattr(SqliteStore, "_flush_on_worker", recording)
    return batches


def _wal_salt(wal: Path) -> int:
    """The WAL header's first salt: SQLite adds one to it each time the WAL starts over."""
    with wal.open("rb") as file:
        header = file.read(32)
    return int.from_bytes(header[16:20], "big")


def test_writes_go_on_inline_while_an_ordinary_checkpoint_runs_and_the_wal_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint every 10 writes, one at a time: before, every write arriving during
    # a checkpoint waited for it (fsyncs) on the worker: the c=1 p99 stall of issue 15.
    # Writes go on inline during the ordinary checkpoints; only those arriving during the
    # short catch-up that follows one that copied everything wait (issue 15: without it
    # the WAL never started over at one request at a time, and each commit's WAL-index
    # probes walked past every earlier copy of its pages).
    path = tmp_path / "gateway.db"
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_EVERY", 10)
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_ALONE_EVERY", 10)
    on_worker = _writes_on_the_worker(monkeypatch)
    due: list[bool] = []  # every call, as before
    checkpoints: list[bool] = []  # those that started (none while one runs)
    original = SqliteStore._checkpoint

    def recording(self: SqliteStore, *, blocking: bool) -> None:
        due.append(blocking)
        if self._checkpointing is None:
            checkpoints.append(blocking)
        original(self, blocking=blocking)

    monkeypatch.setattr(SqliteStore, "_checkpoint", recording)

    wal = path.with_name("gateway.db-wal")

    async def body() -> tuple[Decimal, Decimal, int]:
        store, key_id = await _store_with_key(str(path))
        try:
            salt_before = _wal_salt(wal)
            for _ in range(300):
                reservation = await store.reserve(key_id, "default", COST)
                assert reservation is not None
                await store.settle(reservation, COST)
            usage, reserved = await _usage_and_reserved(store, key_id)
            return usage, reserved, (_wal_salt(wal) - salt_before) % 2**32
        finally:
            await store.close()

    usage, reserved, wal_restarts = asyncio.run(body())
    assert (usage, reserved) == (COST * 300, Decimal(0))
    assert due.count(False) >= 50
    # A blocking one only ever follows an ordinary one (its catch-up), never two in a row.
    assert all(checkpoints[i - 1] is False for i, b in enumerate(checkpoints) if b)
    assert checkpoints[0] is False
    # No write waited for an ordinary checkpoint: only those queued behind a catch-up.
    assert all(blocking for _, blocking in on_worker)
    # The WAL started over: with only the blocking checkpoint at the bound (16,384
    # frames) to start it over, these 600 writes (about 3,600 frames) never would.
    # Counted, not inferred from the file's size: how far it grows between restarts
    # depends on how many catch-ups a busy CI machine's fsyncs let through (one run
    # reached 1.09 MB where a quiet one stays at 0.6).
    assert wal_restarts >= 1


def test_the_wal_stays_bounded_under_a_steady_stream_of_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.db"
    wal = path.with_name("gateway.db-wal")
    # Scaled down from 1,000 writes and 64 MB, so that 12,800 writes cross the bound
    # several times.
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_EVERY", 100)
    monkeypatch.setattr(sqlite_module, "_WAL_BOUND_FRAMES", 1024)

    async def body() -> int:
        store, key_id = await _store_with_key(str(path))

        async def client() -> None:
            for _ in range(1600):
                reservation = await store.reserve(key_id, "default", COST)
                assert reservation is not None
                await store.settle(reservation, COST)

        try:
            await asyncio.gather(*[client() for _ in range(4)])
            return wal.stat().st_size
        finally:
            await store.close()

    # 12,800 writes, mostly committed one or a few at a time: ordinary checkpoints race
    # the inline commits and never start the WAL over, so without the blocking one at
    # the bound it would keep every write's pages (about 80 MB here).
    assert asyncio.run(body()) < 16 * 1024 * 1024


def test_a_new_database_has_small_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    # Every commit appends each page it changed to the WAL whole: small pages keep the
    # WAL a checkpoint must sync small. A database made before keeps its page size.
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE earlier (x)")

    async def body(path: Path) -> Decimal:
        store, key_id = await _store_with_key(str(path))
        try:
            reservation = await store.reserve(key_id, "default", COST)
            assert reservation is not None
            await store.settle(reservation, COST)
            return (await _usage_and_reserved(store, key_id))[0]
        finally:
            await store.close()

    for path, size in ((tmp_path / "new.db", sqlite_module._PAGE_SIZE), (old, 4096)):
        assert asyncio.run(body(path)) == COST
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA page_size").fetchone()[0] == size
    assert sqlite_module._PAGE_SIZE == 1024


def test_reservations_are_kept_by_id_alone_and_the_migration_keeps_them(
    tmp_path: Path,
) -> None:
    # A database at the schema before reservations became WITHOUT ROWID, holding a
    # live reservation: the migration copies it, and it is settled as before.
    path = tmp_path / "before.db"
    store, key_id = asyncio.run(_store_with_key(str(path)))
    asyncio.run(store.close())
    with sqlite3.connect(path, isolation_level=None) as conn:
        # The table as the migrations before left it: a rowid table.
        conn.execute("DROP TABLE reservations")
        conn.execute(
            "CREATE TABLE reservations (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
            "org_id TEXT, amount TEXT NOT NULL, expires_at REAL NOT NULL, key_window TEXT, "
            "project_id TEXT, project_window TEXT)"
        )
        conn.execute(
            "CREATE INDEX reservations_project ON reservations(project_id, project_window)"
        )
        conn.execute("CREATE INDEX reservations_org ON reservations(org_id, expires_at, amount)")
        conn.execute(
            "CREATE INDEX reservations_key_flight "
            "ON reservations(key_id, expires_at, key_window, amount)"
        )
        assert (
            "WITHOUT ROWID"
            not in conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'reservations'"
            ).fetchone()[0]
        )
        conn.execute(
            "INSERT INTO reservations (id, key_id, org_id, amount, expires_at, key_window, "
            "project_id, project_window) VALUES ('res-old', ?, 'default', '0.25', 4e9, "
            "NULL, 'default', NULL)",
            (key_id,),
        )
        # And without the reserved figures and the key's slots, which the migrations
        # after it add.
        later = ("slot_at", "slot_requests", "slot_tokens", "slot_window", "slot_usage")
        for column in ("flight_units", "flight_count", "flight_until", *later):
            conn.execute(f"ALTER TABLE api_keys DROP COLUMN {column}")
        by_id = next(
            number
            for number, statements in enumerate(sqlite_module.MIGRATIONS)
            if any("reservations_by_id" in statement for statement in statements)
        )
        conn.execute("UPDATE schema_version SET version = ?", (by_id,))

    async def body() -> tuple[Decimal, Decimal, Decimal, Decimal]:
        store = SqliteStore(str(path))
        try:
            await store.migrate()
            held = await _usage_and_reserved(store, key_id)
            old = Reservation(id="res-old", key_id=key_id, organization_id="default", amount=COST)
            await store.settle(old, COST)
            return (*held, *(await _usage_and_reserved(store, key_id)))
        finally:
            await store.close()

    usage, reserved, settled_usage, settled_reserved = asyncio.run(body())
    assert (usage, reserved) == (Decimal(0), Decimal("0.25"))
    assert (settled_usage, settled_reserved) == (COST, Decimal(0))
    with sqlite3.connect(path) as conn:
        table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'reservations'")
        sql = table.fetchone()[0]
        assert "WITHOUT ROWID" in sql
        # The later migration that clusters the table by key (the primary key does what
        # `reservations_key_flight` did: tests/store/test_store_sqlite_wal_pages.py).
        assert "PRIMARY KEY (key_id, id)" in sql
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'reservations'"
            )
        }
        assert {"reservations_org", "reservations_project"} <= indexes


def test_a_plain_admission_names_a_missing_key_or_organization(tmp_path: Path) -> None:
    # One statement reads the key, the organization and its reservations; when either
    # row is missing, the answer still says which.
    async def body() -> list[str]:
        store, key_id = await _store_with_key(str(tmp_path / "missing.db"))
        messages = []
        try:
            for key, org in ((key_id, "ghost-org"), ("ghost-key", "default")):
                claim = Claim(key_id=key, organization_id=org, amount=COST, project_id="default")
                with pytest.raises(NotFound) as raised:
                    await store.admit(claim, "tkt-1")
                messages.append(str(raised.value))
            admitted = await store.admit(
                Claim(key_id=key_id, organization_id="default", amount=COST, project_id="default"),
                "tkt-2",
            )
            assert isinstance(admitted, Admitted)
        finally:
            await store.close()
        return messages

    assert asyncio.run(body()) == [
        "organization `ghost-org` does not exist",
        "key `ghost-key` does not exist",
    ]
