"""A key's reserved figures on SQLite (`api_keys.flight_units`, `flight_count`,
`flight_until`): the admission of a key with controls reads its live reservations from
them instead of summing its rows. They never under-count the key's live reservations
after any mix of admissions, settlements, releases, undos, sweeps and restarts, they
are exact whenever the admission takes them as exact, and an existing database (rows
without units) gets there without ever deciding on a wrong sum."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from proxy.store import sqlite as sqlite_module
from proxy.store.base import Admitted, BudgetWindow, Claim, Queued, RateLimits, Reservation
from proxy.store.sqlite import SqliteStore, _money, _units

TTL = 100.0
LIMIT = Decimal("0.05")
WALK_LIMIT = Decimal("0.03")  # a few requests in flight reach it
START = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _claim(key_id: str, amount: Decimal, controlled: bool, now: float) -> Claim:
    if not controlled:  # the key as a stale cache may still see it: no controls
        return Claim(key_id=key_id, organization_id="default", amount=amount, project_id="default")
    return Claim(
        key_id=key_id,
        organization_id="default",
        amount=amount,
        project_id="default",
        key_budget=BudgetWindow(amount=Decimal("1000"), start="2026-12-07T00:00:00Z"),
        key_limits=RateLimits(rpm=10**6, tpm=10**9, max_parallel=10**6),
        tokens=5,
        now=math.floor(now),
    )


async def _read(store: SqliteStore, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    return await store._run(fn)  # on the store's worker, which owns its connection


def _state(conn: sqlite3.Connection, key_id: str) -> tuple[Any, ...]:
    figures = conn.execute(
        "SELECT usage, flight_units, flight_count, flight_until FROM api_keys WHERE id = ?",
        (key_id,),
    ).fetchone()
    rows = conn.execute(
        "SELECT amount, units, expires_at FROM reservations WHERE key_id = ?", (key_id,)
    ).fetchall()
    return figures, rows


def _check_invariant(figures: tuple[Any, ...], rows: list[tuple[Any, ...]], now: float) -> None:
    _, units, count, until = figures
    live = [row for row in rows if row[2] > now]
    if units is None:
        return
    # Kept: every row has its units, and the figures never count less than the rows.
    assert all(row[1] is not None for row in rows)
    assert all(_money(row[1]) == Decimal(row[0]) for row in rows)
    assert units >= sum(row[1] for row in rows)
    assert count >= len(rows)
    if until > now:  # taken as exact by the admission: exactly the live reservations
        assert len(live) == len(rows)
        assert units == sum(row[1] for row in live)
        assert count == len(live)


_AMOUNTS = st.sampled_from(["0.01", "0.007", "0.0025", "0.00000000000001", "0.013"])
_ADMIT = st.tuples(st.just("admit"), st.booleans(), _AMOUNTS)
_STEP = st.one_of(
    _ADMIT,
    _ADMIT,
    st.tuples(st.sampled_from(["settle", "release", "undo"]), st.integers(0, 30), st.just("")),
    st.tuples(st.just("tick"), st.sampled_from([1, 30, 60, 99, 100, 150]), st.just("")),
    st.tuples(st.sampled_from(["sweep", "restart", "forget"]), st.just(0), st.just("")),
)


@given(steps=st.lists(_STEP, max_size=40))
@settings(max_examples=120, deadline=None)
def test_the_figures_never_under_count_and_decide_as_the_exact_sum(
    steps: list[tuple[str, Any, Any]],
) -> None:
    # "forget": the figures dropped (NULL), as an existing database has them.
    # "restart": the store closed with requests in flight (their Reservations lost,
    # as after a crash) and opened again. "sweep": expired reservations deleted
    # without being taken out of the figures.
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(sqlite_module, "now_epoch", clock):
        asyncio.run(_walk(Path(tmp) / "figures.db", steps, clock))


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(str(path), reservation_ttl=TTL)
    await store.migrate()
    return store


async def _walk(path: Path, steps: list[tuple[str, Any, Any]], clock: Clock) -> None:
    store = await _open(path)
    await store.ensure_defaults()
    await store.set_credits("default", Decimal("1000"))
    key, _ = await store.create_key("default", WALK_LIMIT, "figures")
    held: list[Reservation] = []
    try:
        for number, (action, first, second) in enumerate(steps):
            now = clock.now
            if action == "admit":
                amount = Decimal(second)
                claim = _claim(key.id, amount, first, now)
                figures, rows = await _read(store, lambda conn: _state(conn, key.id))
                live = [row for row in rows if row[2] > now]
                reserved = sum((Decimal(row[0]) for row in live), Decimal(0))
                fits = Decimal(figures[0]) + reserved < WALK_LIMIT
                outcome = await store.admit(claim, f"tkt-{number}")
                assert isinstance(outcome, Admitted) == fits, (outcome, reserved)
                event(f"admitted={fits} figures kept={figures[1] is not None}")
                if isinstance(outcome, Admitted):
                    held.append(outcome.reservation)
                    if first:  # the rate window's requests in flight: exact
                        rate = outcome.reservation.rate
                        assert rate is not None and rate.key is not None
                        assert rate.key.parallel == len(live) + 1
                else:
                    assert isinstance(outcome, Queued)
                    await store.withdraw(claim, f"tkt-{number}")
            elif action in ("settle", "release", "undo") and held:
                reservation = held.pop(first % len(held))
                if action == "settle":
                    await store.settle(reservation, reservation.amount / 10, tokens=1)
                elif action == "release":
                    await store.release(reservation)
                else:
                    await store._request_write(sqlite_module._undoing(reservation))
            elif action == "tick":
                clock.now += first
            elif action == "sweep":
                await store.reclaim_expired()
            elif action == "restart":
                await store.close()
                store = await _open(path)
                held = []
            elif action == "forget":
                await store._run(
                    lambda conn: conn.execute(
                        "UPDATE api_keys SET flight_units = NULL WHERE id = ?", (key.id,)
                    )
                )
            figures, rows = await store._run(lambda conn: _state(conn, key.id))
            _check_invariant(figures, rows, clock.now)
    finally:
        await store.close()


def test_a_controlled_key_keeps_figures_and_its_last_settlement_makes_them_exact(
    tmp_path: Path,
) -> None:
    clock = Clock()

    async def body() -> list[tuple[Any, ...]]:
        store = await _open(tmp_path / "kept.db")
        await store.ensure_defaults()
        key, _ = await store.create_key("default", LIMIT, "kept")
        seen = []
        try:
            first = await store.admit(_claim(key.id, Decimal("0.01"), True, clock.now), "t1")
            second = await store.admit(_claim(key.id, Decimal("0.0025"), True, clock.now), "t2")
            assert isinstance(first, Admitted) and isinstance(second, Admitted)
            seen.append((await _read(store, lambda conn: _state(conn, key.id)))[0])
            await store.settle(first.reservation, Decimal("0.001"))
            seen.append((await _read(store, lambda conn: _state(conn, key.id)))[0])
            await store.release(second.reservation)
            seen.append((await _read(store, lambda conn: _state(conn, key.id)))[0])
        finally:
            await store.close()
        return seen

    with mock.patch.object(sqlite_module, "now_epoch", clock):
        both, one, none = asyncio.run(body())
    assert both[1:3] == (12_500_000_000, 2)
    assert both[3] == START + TTL
    assert one[1:3] == (2_500_000_000, 1)
    # The last one gone: exact again, however long the key stays idle.
    assert none[1:] == (0, 0, math.inf)


def test_an_existing_database_counts_its_reservations_until_they_all_have_units(
    tmp_path: Path,
) -> None:
    # A database at the schema before the figures, with a live reservation of a key:
    # the migration adds the columns (NULL: not kept); the key's admissions sum its
    # reservations exactly until the old one settles, then keep the figures.
    clock = Clock()
    path = tmp_path / "before.db"

    async def prepare() -> str:
        store = await _open(path)
        await store.ensure_defaults()
        key, _ = await store.create_key("default", LIMIT, "old")
        await store.close()
        return key.id

    with mock.patch.object(sqlite_module, "now_epoch", clock):
        key_id = asyncio.run(prepare())
    with sqlite3.connect(path, isolation_level=None) as conn:
        # The columns of the migrations from the figures' on (later ones' too).
        figures_migration = next(
            number
            for number, statements in enumerate(sqlite_module.MIGRATIONS)
            if any("flight_units" in statement for statement in statements)
        )
        later = ("slot_at", "slot_requests", "slot_tokens", "slot_window", "slot_usage")
        for column in ("flight_units", "flight_count", "flight_until", *later):
            conn.execute(f"ALTER TABLE api_keys DROP COLUMN {column}")
        conn.execute("ALTER TABLE reservations DROP COLUMN units")
        conn.execute(
            "INSERT INTO reservations (id, key_id, org_id, amount, expires_at, key_window, "
            "project_id, project_window) VALUES ('res-old', ?, 'default', '0.03', ?, NULL, "
            "'default', NULL)",
            (key_id, START + TTL),
        )
        conn.execute("UPDATE schema_version SET version = ?", (figures_migration,))

    async def body() -> list[Any]:
        store = await _open(path)
        seen: list[Any] = []

        async def admit(ticket: str) -> Admitted | Queued | Any:
            claim = _claim(key_id, Decimal("0.01"), True, clock.now)
            outcome = await store.admit(claim, ticket)
            if isinstance(outcome, Queued):
                await store.withdraw(claim, ticket)
            return outcome

        try:
            # 0.03 held by the old row: the admission is held while what is in flight
            # stays below the limit of 0.05.
            first, second, third = [await admit(f"t{n}") for n in range(3)]
            assert isinstance(first, Admitted) and isinstance(second, Admitted)
            seen.append(third)
            seen.append(second.reservation.units)
            seen.append((await _read(store, lambda conn: _state(conn, key_id)))[0])
            old = Reservation(
                id="res-old", key_id=key_id, organization_id="default", amount=Decimal("0.03")
            )
            await store.settle(old, Decimal(0))
            assert isinstance(await admit("t3"), Admitted)
            seen.append((await _read(store, lambda conn: _state(conn, key_id)))[0])
        finally:
            await store.close()
        return seen

    with mock.patch.object(sqlite_module, "now_epoch", clock):
        third, units, before, after = asyncio.run(body())
    assert isinstance(third, Queued)  # 0.03 + 0.01 + 0.01: the old row is counted
    assert units == 10_000_000_000  # new rows have their units for when they are kept
    assert before[1] is None  # the old row has none: not kept, summed
    # The old row settled: the three new rows counted, the figures kept from there.
    assert after[1:3] == (30_000_000_000, 3)


@pytest.mark.parametrize(
    ("amount", "units"),
    [
        ("0.0025", 2_500_000_000),
        ("0", 0),
        ("1E-12", 1),
        ("1E-13", None),  # finer than a unit: not kept
        ("12.5000000000000000000", 12_500_000_000_000),
        ("4E+6", 4_000_000 * 10**12),
        ("1E+7", None),  # 10**19 units: over the 64-bit bound
        ("0.1234567890123456789012345678901", None),
    ],
)
def test_units_are_exact_or_none(amount: str, units: int | None) -> None:
    assert _units(Decimal(amount)) == units
    if units is not None:
        assert _money(units) == Decimal(amount)
