"""The SQLite rate window's prune reads only the rows that left the window: on the
(subject, open_until) index, which SQLite prefers for it, every settled row of the last
minute matches, and each admission read the whole window again (38.7% of the gateway's
active samples at c=64 with a rate-limited key, bench.profile_gateway --controls)."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.store.common import RATE_WINDOW_SECONDS
from proxy.store.sqlite import _PRUNE_RATE_EVENTS, MIGRATIONS, _rate_count


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


@given(
    events=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=200),  # admitted at (whole seconds)
            st.integers(min_value=0, max_value=50),  # tokens
            st.booleans(),  # still in flight
        ),
        max_size=30,
    ),
    nows=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=6),
)
@settings(max_examples=200, deadline=None)
def test_the_window_counts_match_a_recount_whenever_rows_leave(
    events: list[tuple[int, int, bool]], nows: list[int]
) -> None:
    # Rows leave the totals (and settled ones the table) only when the oldest counted
    # row is out of the window, not on every admission; the counts still equal a plain
    # recount of the rows in it.
    conn = sqlite3.connect(":memory:")
    for migration in MIGRATIONS:
        for statement in migration:
            if "rate_events" in statement or "rate_totals" in statement:
                conn.execute(statement)
    for number, (at, tokens, flying) in enumerate(events):
        conn.execute(
            "INSERT INTO rate_events (res_id, subject, at, tokens, open_until) "
            "VALUES (?, 'k:key', ?, ?, ?)",
            (f"r{number}", float(at), tokens, 1e9 if flying else 0.0),
        )
    for now in sorted(nows):
        count = _rate_count(conn, "k:key", float(now), float(now))
        inside = [event for event in events if event[0] > now - RATE_WINDOW_SECONDS]
        assert count.requests == len(inside)
        assert count.tokens == sum(tokens for _, tokens, _ in inside)
        assert count.parallel == sum(1 for *_, flying in events if flying)
        assert count.oldest == (min(at for at, *_ in inside) if inside else None)
