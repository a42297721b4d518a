"""The pages a SQLite request's commits append to the WAL (issue 15): reservations are
clustered by their key, so a plain request writes 8 pages (3 for its admission, 5 for
its settlement) where a table keyed by id plus an index by key wrote 10; and an
existing database's live reservations move to that layout and settle as before."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from bench.wal_pages import WalReader
from proxy.admission import Admission
from proxy.store import sqlite as sqlite_module
from proxy.store.base import Admitted, BudgetWindow, Claim, RateLimits, Reservation
from proxy.store.sqlite import _DELETE_RESERVATION, _KEY_IN_FLIGHT, MIGRATIONS, SqliteStore

BOUND = Decimal("0.0025")
COST = Decimal("0.000123")


def _names(path: Path) -> dict[int, str]:
    with sqlite3.connect(path) as conn:
        return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}


def test_a_plain_request_appends_eight_pages_to_the_wal(tmp_path: Path) -> None:
    # One request at a time, as under `wrk -c1`: each of its two writes commits alone.
    path = tmp_path / "gateway.db"

    async def body() -> list[tuple[list[str], list[str]]]:
        store = SqliteStore(str(path))
        try:
            await store.migrate()
            await store.ensure_defaults()
            await store.set_credits("default", Decimal("1000"))
            key, _ = await store.create_key("default", None, "plain")
            admission = Admission(store)
            claim = Claim(
                key_id=key.id, organization_id="default", amount=BOUND, project_id="default"
            )
            reader = WalReader(path)
            seen = []
            for _ in range(5):
                reader.new_frames()
                reservation = await admission.reserve(claim)
                assert isinstance(reservation, Reservation)
                reserved = reader.new_frames()
                await asyncio.sleep(0)
                await admission.settle(reservation, COST)
                settled = reader.new_frames()
                names = _names(path)
                seen.append(
                    (
                        sorted(names[page] for page, _ in reserved),
                        sorted(names[page] for page, _ in settled),
                    )
                )
            return seen
        finally:
            await store.close()

    for reserved, settled in asyncio.run(body())[1:]:
        assert reserved == ["reservations", "reservations_org", "reservations_project"]
        assert settled == [
            "api_keys",
            "organizations",
            "reservations",
            "reservations_org",
            "reservations_project",
        ]


def test_a_keys_reservations_are_read_and_deleted_by_the_primary_key() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    plans = {
        query: " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))
        for query, args in (
            (_KEY_IN_FLIGHT, ("k", 1.0)),
            ("SELECT id, amount, units, expires_at FROM reservations WHERE key_id = ?", ("k",)),
            (_DELETE_RESERVATION, ("k", "r")),
        )
    }
    assert "SEARCH reservations USING PRIMARY KEY (key_id=?)" in plans[_KEY_IN_FLIGHT]
    assert "PRIMARY KEY (key_id=? AND id=?)" in plans[_DELETE_RESERVATION]
    assert all("INDEX" not in plan.replace("PRIMARY KEY", "") for plan in plans.values()), plans
    indexes = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'reservations'"
        )
    }
    assert indexes == {"reservations_org", "reservations_project"}


def _controlled(key_id: str) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id="default",
        amount=BOUND,
        project_id="default",
        key_budget=BudgetWindow(amount=Decimal("1000"), start="2026-12-07T00:00:00Z"),
        key_limits=RateLimits(rpm=10**6, tpm=10**9, max_parallel=10**6),
        tokens=5,
        now=math.floor(time.time()),
    )


def test_the_migration_clusters_live_reservations_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database at the schema before: reservations keyed by id with an index by key,
    # holding live reservations of a key whose reserved figures are kept (rows with
    # units) and of a plain key. The migration copies them; they count, and settle
    # and release, as before.
    path = tmp_path / "before.db"
    by_key = next(
        number
        for number, statements in enumerate(MIGRATIONS)
        if any("reservations_by_key" in statement for statement in statements)
    )
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:by_key])

    async def hold() -> tuple[str, str, list[Reservation]]:
        store = SqliteStore(str(path))
        try:
            await store.migrate()
            await store.ensure_defaults()
            await store.set_credits("default", Decimal("1000"))
            controlled, _ = await store.create_key("default", Decimal("10"), "controlled")
            plain, _ = await store.create_key("default", None, "plain")
            held = []
            for _ in range(2):
                admitted = await store.admit(_controlled(controlled.id), "ticket")
                assert isinstance(admitted, Admitted)
                held.append(admitted.reservation)
            reservation = await store.reserve(plain.id, "default", BOUND)
            assert reservation is not None
            held.append(reservation)
            return controlled.id, plain.id, held
        finally:
            await store.close()

    controlled_id, plain_id, held = asyncio.run(hold())
    monkeypatch.undo()
    assert all(reservation.units is not None for reservation in held[:2])
    with sqlite3.connect(path) as conn:
        table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'reservations'")
        assert "PRIMARY KEY (key_id, id)" not in table.fetchone()[0]

    async def settle() -> list[tuple[Decimal, Decimal, tuple[int, int]]]:
        store = SqliteStore(str(path))
        figures = []

        async def state(key_id: str) -> tuple[Decimal, Decimal, tuple[int, int]]:
            key = await store.get_key(key_id)
            context = await store.key_context(key.token_hash)
            assert context is not None
            row = await store._run(
                lambda conn: conn.execute(
                    "SELECT flight_units, flight_count FROM api_keys WHERE id = ?",
                    (controlled_id,),
                ).fetchone()
            )
            return context.key.usage, context.reserved, tuple(row)

        try:
            await store.migrate()
            figures.append(await state(controlled_id))
            await store.settle(held[0], COST, tokens=3)
            await store.release(held[1])
            figures.append(await state(controlled_id))
            figures.append(await state(plain_id))
            await store.settle(held[2], COST)
            figures.append(await state(plain_id))
        finally:
            await store.close()
        return figures

    units = held[0].units
    assert units is not None
    assert asyncio.run(settle()) == [
        (Decimal(0), 2 * BOUND, (2 * units, 2)),
        (COST, Decimal(0), (0, 0)),
        (Decimal(0), BOUND, (0, 0)),
        (COST, Decimal(0), (0, 0)),
    ]
    with sqlite3.connect(path) as conn:
        table = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'reservations'")
        sql = table.fetchone()[0]
        assert "PRIMARY KEY (key_id, id)" in sql and "WITHOUT ROWID" in sql
        assert conn.execute("SELECT count(*) FROM reservations").fetchone() == (0,)
