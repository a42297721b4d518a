"""SQLite's admission compares in-flight reservations with the room left using SQLite's
floating-point total only when it is clearly on one side; at the boundary the exact
decimal sum decides, so the exact-limit invariant is unchanged."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.store.sqlite import (
    _PLAIN_ROWS,
    _RATED_KEY_ROW,
    MIGRATIONS,
    _add_money_functions,
    _in_flight_below,
    _key_in_flight_below,
)


@pytest.fixture
def conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE reservations (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, org_id TEXT, "
        "amount TEXT NOT NULL, expires_at REAL NOT NULL)"
    )
    return conn


def _hold(conn: sqlite3.Connection, *amounts: str, expires_at: float = 100.0) -> None:
    for amount in amounts:
        count = conn.execute("SELECT count(*) FROM reservations").fetchone()[0]
        conn.execute(
            "INSERT INTO reservations VALUES (?, 'k', 'o', ?, ?)", (f"r{count}", amount, expires_at)
        )


def test_the_exact_sum_decides_at_the_boundary(conn: sqlite3.Connection) -> None:
    _hold(conn, "0.1", "0.1", "0.1")  # 0.30000000000000004 as doubles
    assert not _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("0.3"))
    assert _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("0.3000000000000000000001"))
    assert not _in_flight_below(
        conn, "org_id = ?", ("o",), 50.0, Decimal("0.2999999999999999999999")
    )


def test_far_from_the_boundary_and_without_reservations(conn: sqlite3.Connection) -> None:
    assert _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("0.000001"))
    assert not _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal(0))
    _hold(conn, *["0.00049250"] * 64)
    assert _in_flight_below(conn, "org_id = ?", ("o",), 50.0, Decimal("1000000000.00"))
    assert not _in_flight_below(conn, "org_id = ?", ("o",), 50.0, Decimal("0.01"))
    assert not _in_flight_below(
        conn, "org_id = ?", ("o",), 50.0, Decimal("0.03152")
    )  # = 64 x 0.0004925
    assert _in_flight_below(conn, "org_id = ?", ("o",), 50.0, Decimal("0.0315200001"))
    # Expired reservations no longer count.
    assert _in_flight_below(conn, "org_id = ?", ("o",), 150.0, Decimal("0.0000001"))


def test_amounts_a_double_cannot_hold_fall_back_to_the_exact_sum(
    conn: sqlite3.Connection,
) -> None:
    _hold(conn, "1E-400", "1E-400")  # 0.0 as doubles
    assert not _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("2E-400"))
    assert _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("3E-400"))
    _hold(conn, "1E+400")  # infinity as a double
    assert _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("1E+401"))
    assert not _in_flight_below(conn, "key_id = ?", ("k",), 50.0, Decimal("1E+400"))


@given(
    held=st.lists(
        st.tuples(
            st.sampled_from(["0.1", "0.2", "0.3", "1E-400", "0.00049250", "7"]),
            st.sampled_from(["w1", "w2", None]),
            st.sampled_from([40.0, 100.0]),
        ),
        max_size=12,
    ),
    limit_room=st.one_of(st.none(), st.sampled_from(["0", "0.3", "0.6", "1E-399", "14.3"])),
    window_room=st.one_of(st.none(), st.sampled_from(["0", "0.2", "0.3", "0.30001", "7"])),
)
@settings(max_examples=300, deadline=None)
def test_one_read_of_the_key_decides_as_one_read_per_check(
    held: list[tuple[str, str | None, float]], limit_room: str | None, window_room: str | None
) -> None:
    # The admission reads a key's reservations once for its usage limit and its budget
    # window together; the answer is the two separate exact checks'.
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE reservations (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, org_id TEXT, "
        "amount TEXT NOT NULL, expires_at REAL NOT NULL, key_window TEXT)"
    )
    for number, (amount, window, expires_at) in enumerate(held):
        conn.execute(
            "INSERT INTO reservations VALUES (?, 'k', NULL, ?, ?, ?)",
            (f"r{number}", amount, expires_at, window),
        )
    limit = None if limit_room is None else Decimal(limit_room)
    window = None if window_room is None else ("w1", Decimal(window_room))
    expected = (limit is None or _in_flight_below(conn, "key_id = ?", ("k",), 50.0, limit)) and (
        window is None
        or _in_flight_below(conn, "key_id = ? AND key_window = ?", ("k", "w1"), 50.0, window[1])
    )
    assert _key_in_flight_below(conn, "k", 50.0, limit, window, None) == expected
    # The same from the key's exact live total, as its reserved figures give it.
    live = [Decimal(amount) for amount, _, expires_at in held if expires_at > 50.0]
    reserved = sum(live, Decimal(0))
    assert _key_in_flight_below(conn, "k", 50.0, limit, window, reserved) == expected


def test_the_organizations_reservations_are_summed_from_the_index_alone() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT total(amount), count(*) FROM reservations "
        "WHERE org_id = ? AND expires_at > ?",
        ("o", 1.0),
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "COVERING INDEX reservations_org (org_id=? AND expires_at>?)" in details, details


@given(
    usage=st.decimals(min_value=0, max_value=10**12, places=12, allow_nan=False),
    cost=st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False),
)
@settings(max_examples=200, deadline=None)
def test_the_settlement_arithmetic_in_sql_is_decimals(usage: Decimal, cost: Decimal) -> None:
    # A settlement adds to the stored decimal text inside its UPDATE; the result is the
    # text `Decimal` arithmetic gives, never SQLite's floating point.
    conn = sqlite3.connect(":memory:")
    _add_money_functions(conn)
    added, subtracted = conn.execute(
        "SELECT decimal_add(?, ?), decimal_subtract(?, ?)", (str(usage), str(cost)) * 2
    ).fetchone()
    assert (added, subtracted) == (str(usage + cost), str(usage - cost))


_AMOUNTS = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("100000"), places=8, allow_nan=False
).map(str)


@given(
    amounts=st.lists(_AMOUNTS, min_size=1, max_size=20),
    offset=st.sampled_from(
        ["0", "1E-8", "-1E-8", "1E-20", "-1E-20", "0.5", "-0.5", "1E-300", "-1E-300"]
    ),
    scale=st.sampled_from(["1", "1.000000000001", "0.999999999999", "1.0001", "0.9999", "2"]),
)
@settings(max_examples=400, deadline=None)
def test_the_floating_point_shortcut_answers_as_the_exact_sum(
    amounts: list[str], offset: str, scale: str
) -> None:
    # The room is put at, just above, just below and far from the exact sum: whatever
    # the floating-point comparisons conclude, the answer is the exact one.
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE reservations (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, org_id TEXT, "
        "amount TEXT NOT NULL, expires_at REAL NOT NULL)"
    )
    _hold(conn, *amounts)
    exact = sum(map(Decimal, amounts), Decimal(0))
    room = exact * Decimal(scale) + Decimal(offset)
    assert _in_flight_below(conn, "key_id = ?", ("k",), 50.0, room) == (exact < room)


def test_a_rated_admission_reads_the_organizations_reservations_from_the_index_alone() -> None:
    # The admission of a key with controls reads its row (with its reserved figures),
    # its organization's and the organization's live reservations in one statement.
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN {_RATED_KEY_ROW}", ("k:k", "w", "o", 1.0, "k")
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "COVERING INDEX reservations_org (org_id=? AND expires_at>?)" in details, details
    assert "reservations_key_flight" not in details, details
    assert "MATERIALIZE" not in details, details


def test_a_plain_admission_reads_the_organizations_reservations_from_the_index_alone() -> None:
    # The admission of a key without controls reads its row, its organization's and the
    # organization's live reservations in one statement.
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    plan = conn.execute(f"EXPLAIN QUERY PLAN {_PLAIN_ROWS}", ("o", 1.0, "k")).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "COVERING INDEX reservations_org (org_id=? AND expires_at>?)" in details, details
    assert "MATERIALIZE" not in details, details
    assert "SEARCH k USING INDEX sqlite_autoindex_api_keys_1 (id=?)" in details, details
    assert "SEARCH o USING INDEX sqlite_autoindex_organizations_1 (id=?)" in details, details


def test_a_plain_admission_reads_the_figures_the_separate_reads_give(
    conn: sqlite3.Connection,
) -> None:
    conn.execute(
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, usage TEXT, usage_limit TEXT, "
        "queue_until REAL, flight_units INTEGER)"
    )
    conn.execute("CREATE TABLE organizations (id TEXT PRIMARY KEY, credits TEXT, queue_until REAL)")
    conn.execute("INSERT INTO api_keys VALUES ('k', '1.5', '10', 3.0, NULL)")
    conn.execute("INSERT INTO organizations VALUES ('o', '7.25', 4.0)")
    _hold(conn, "0.1", "0.2", "0.3")
    _hold(conn, "5", expires_at=10.0)  # expired at 50
    conn.execute(
        "INSERT INTO reservations VALUES ('other', 'k2', 'o2', '9', 100.0)"
    )  # another organization's
    row = conn.execute(_PLAIN_ROWS, ("o", 50.0, "k")).fetchone()
    assert row[:4] == ("1.5", "10", "k", 3.0)
    assert row[4:7] == ("7.25", "o", 4.0)
    assert row[8] == 3
    assert row[7] == pytest.approx(0.6)
    # No key or no organization: one row of NULLs (an aggregate always answers).
    assert conn.execute(_PLAIN_ROWS, ("o", 50.0, "missing")).fetchone()[2] is None
    assert conn.execute(_PLAIN_ROWS, ("missing", 50.0, "k")).fetchone()[2] is None
    none_live = conn.execute(_PLAIN_ROWS, ("o", 200.0, "k")).fetchone()
    assert none_live[7:] == (0.0, 0, None)
