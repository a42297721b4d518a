"""PostgreSQL's rate-window prune (gw_rate_window) searches only the rows that left the
window. On SQLite the same delete had chosen the (subject, open_until) index, where
every settled row of the last minute matches, and read the whole window on each
admission; PostgreSQL's plan for it had never been looked at. Checked with a minute
of settled traffic in the table, fresh statistics, and the generic plan PL/pgSQL
settles on after a few calls."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from store_backends import (
    PG_BASE_URL,
    PG_HOST,
    PG_PORT,
    _create_schema,
    _drop_schema,
    pg_url_with_schema,
    require_server,
)

from proxy.store import open_store
from proxy.store.postgres import _RATE_WINDOW_TOTALS

# The statements of gw_rate_window that search the window, with the function's
# parameters as placeholders.
_PRUNE = (
    "DELETE FROM rate_events e "
    "WHERE e.subject = p_subject AND NOT e.counted AND e.open_until <= now()"
)
_LEAVE = (
    "UPDATE rate_events e SET counted = false "
    "WHERE e.subject = p_subject AND e.counted AND e.at <= p_now - 60"
)


def _one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


@pytest.fixture
def schema() -> Iterator[str]:
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    name = f"gwtest_{secrets.token_hex(6)}"
    _create_schema(name)
    try:
        yield name
    finally:
        _drop_schema(name)


def _plan(conn: psycopg.Connection[tuple[object, ...]], statement: str) -> str:
    rows = conn.execute(f"EXPLAIN {statement}").fetchall()
    return " ".join(str(row[0]) for row in rows)


def test_the_statements_checked_are_the_functions_own() -> None:
    body = _one_line(_RATE_WINDOW_TOTALS)
    assert _PRUNE in body
    assert _LEAVE in body


def test_the_prune_and_the_leaving_rows_read_the_counted_index(schema: str) -> None:
    async def migrate() -> None:
        store = open_store(pg_url_with_schema(schema))
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{schema}"')
        # A minute of one key's traffic at 500 requests/s, all settled, 64 in flight,
        # next to other keys' rows.
        conn.execute(
            "INSERT INTO rate_events (res_id, subject, at, tokens, open_until) "
            "SELECT 'r' || g, 'k:key', 1000 + g / 500, 100, '-infinity' "
            "FROM generate_series(1, 30000) g"
        )
        conn.execute(
            "UPDATE rate_events SET open_until = now() + interval '10 minutes' "
            "WHERE res_id IN (SELECT 'r' || g FROM generate_series(29937, 30000) g)"
        )
        conn.execute(
            "INSERT INTO rate_events (res_id, subject, at, tokens, open_until) "
            "SELECT 'o' || g, 'k:other' || (g % 50), 1000 + g / 100, 100, '-infinity' "
            "FROM generate_series(1, 5000) g"
        )
        conn.execute("ANALYZE rate_events")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for name, statement, types in (
            ("prune", _PRUNE.replace("p_subject", "$1"), "text"),
            ("leave", _LEAVE.replace("p_subject", "$1").replace("p_now", "$2"), "text, float8"),
        ):
            conn.execute(f"PREPARE {name}({types}) AS {statement}")
        prune = _plan(conn, "EXECUTE prune('k:key')")
        leave = _plan(conn, "EXECUTE leave('k:key', 1060)")
    for plan in (prune, leave):
        assert "rate_events_counted" in plan, plan
        assert "rate_events_open" not in plan, plan
        assert "Seq Scan" not in plan, plan
