"""The SQLite rate window's prune reads only the rows that left the window: on the
(subject, open_until) index, which SQLite prefers for it, every settled row of the last
minute matches, and each admission read the whole window again (38.7% of the gateway's
active samples at c=64 with a rate-limited key, bench.profile_gateway --controls)."""

from __future__ import annotations

import sqlite3

from proxy.store.sqlite import _PRUNE_RATE_EVENTS, MIGRATIONS


def test_the_prune_searches_the_rows_that_left_the_window() -> None:
    conn = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        for statement in migration:
            if "rate_events" in statement or "rate_totals" in statement:
                conn.execute(statement)
    plan = conn.execute(f"EXPLAIN QUERY PLAN {_PRUNE_RATE_EVENTS}", ("k:key", 1.0)).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "rate_events_counted (subject=? AND counted=?)" in details, details
    assert "rate_events_open" not in details, details


def test_the_prune_deletes_only_settled_rows_out_of_the_window() -> None:
    conn = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        for statement in migration:
            if "rate_events" in statement or "rate_totals" in statement:
                conn.execute(statement)
    rows = [
        ("gone", 0, 0.0),  # left the window, settled: deleted
        ("flying", 0, 500.0),  # left the window, still in flight: kept
        ("recent", 1, 0.0),  # in the window: kept
    ]
    for res_id, counted, open_until in rows:
        conn.execute(
            "INSERT INTO rate_events (res_id, subject, at, tokens, open_until, counted) "
            "VALUES (?, 'k:key', 1.0, 5, ?, ?)",
            (res_id, open_until, counted),
        )
    conn.execute(_PRUNE_RATE_EVENTS, ("k:key", 100.0))
    left = {row[0] for row in conn.execute("SELECT res_id FROM rate_events")}
    assert left == {"flying", "recent"}
