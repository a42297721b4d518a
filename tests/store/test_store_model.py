"""Random sequences of ledger operations agree with a plain-Decimal model; upgrades apply.

The model: a reservation is admitted iff usage + held < limit (and, when billed to
credits, credits - held_credits > 0); settle adds the cost to usage (and takes it from
credits); release drops the hold. Exact decimals throughout.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_backends import Backend, make_backend

from proxy.store import Reservation, StoreError
from proxy.store.postgres import MIGRATIONS as PG_MIGRATIONS
from proxy.store.sqlite import SqliteStore

money = st.decimals(min_value=Decimal("0"), max_value=Decimal("0.5"), places=4)
operation = st.one_of(
    st.tuples(st.just("reserve"), money, st.booleans()),
    st.tuples(st.just("settle"), money, st.integers(0, 20)),
    st.tuples(st.just("release"), st.just(Decimal(0)), st.integers(0, 20)),
)


@settings(max_examples=60, deadline=None)
@given(
    limit=st.one_of(st.none(), money),
    credits=st.decimals(min_value=Decimal("-0.1"), max_value=Decimal("1"), places=2),
    ops=st.lists(operation, max_size=30),
)
def test_sqlite_ledger_matches_the_model(
    limit: Decimal | None, credits: Decimal, ops: list[tuple[str, Decimal, object]]
) -> None:
    async def body() -> None:
        store = SqliteStore(":memory:")
        try:
            await store.migrate()
            await store.create_organization("org", credits)
            await store.create_project("p", "org", "hybrid")
            key, _ = await store.create_key("p", limit, "")
            usage, balance = Decimal(0), credits
            held: list[Reservation] = []
            for name, amount, arg in ops:
                if name == "reserve":
                    billed = bool(arg)
                    in_flight = sum((r.amount for r in held), Decimal(0))
                    credits_in_flight = sum(
                        (r.amount for r in held if r.organization_id), Decimal(0)
                    )
                    expected = (limit is None or usage + in_flight < limit) and (
                        not billed or balance - credits_in_flight > 0
                    )
                    got = await store.reserve(key.id, "org" if billed else None, amount)
                    assert (got is not None) == expected
                    if got is not None:
                        held.append(got)
                elif held:
                    reservation = held.pop(int(str(arg)) % len(held))
                    if name == "settle":
                        await store.settle(reservation, amount)
                        usage += amount
                        if reservation.organization_id:
                            balance -= amount
                    else:
                        await store.release(reservation)
            assert (await store.get_key(key.id)).usage == usage
            assert (await store.get_organization("org")).credits == balance
        finally:
            await store.close()

    asyncio.run(body())


def test_postgres_upgrades_from_the_first_schema_version(tmp_path: Path) -> None:
    backends = make_backend("postgres", tmp_path)
    backend: Backend = next(backends)
    try:
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            # A database left at version 1 by an older gateway.
            conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
            conn.execute("INSERT INTO schema_version VALUES (1)")
            for statement in PG_MIGRATIONS[0]:
                conn.execute(statement.encode())

        async def upgrade() -> None:
            store = backend.open()
            try:
                await store.migrate()
                await store.ensure_defaults()
                key, _ = await store.create_key("default", Decimal("0.02"), "")
                reservation = await store.reserve(key.id, None, Decimal("0.02"))
                assert reservation is not None
                await store.settle(reservation, Decimal("0.01"))
                assert (await store.get_key(key.id)).usage == Decimal("0.01")
            finally:
                await store.close()

        backend.run(upgrade)
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            version = conn.execute("SELECT version FROM schema_version").fetchone()
            assert version == (len(PG_MIGRATIONS),)
            assert conn.execute("SELECT count(*) FROM ledger_batches").fetchone() == (0,)
            source = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'gw_reserve'")
            assert "synchronous_commit" in str(source.fetchone())
    finally:
        backends.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        store = SqliteStore(str(tmp_path / "new.db"))
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(body())
    with sqlite3.connect(tmp_path / "new.db") as conn:
        conn.execute("UPDATE schema_version SET version = 99")

    async def again() -> None:
        store = SqliteStore(str(tmp_path / "new.db"))
        try:
            with pytest.raises(StoreError, match="schema version 99 is newer"):
                await store.migrate()
        finally:
            await store.close()

    asyncio.run(again())
