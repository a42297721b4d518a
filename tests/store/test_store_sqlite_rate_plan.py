"""The SQLite rate window keeps one row per subject and request second (rate_buckets)
and running totals (rate_totals): an admission reads one totals row and the seconds
leave it only when the oldest one is out of the window. These tests hold the totals to
a plain recount of the requests admitted, settled, released and taken back."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.store.base import Claim, RateCount, RateLimits, RateState, Reservation
from proxy.store.common import RATE_WINDOW_SECONDS
from proxy.store.sqlite import (
    _PROJECT_IN_FLIGHT,
    MIGRATIONS,
    _correct_rate_windows,
    _count_admission,
    _rate_count,
)


def _migrated() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for migration in MIGRATIONS:
        for statement in migration:
            conn.execute(statement)
    return conn


def test_the_prune_searches_only_the_seconds_that_left_the_window() -> None:
    conn = _migrated()
    plan = conn.execute(
        "EXPLAIN QUERY PLAN DELETE FROM rate_buckets WHERE subject = ? AND at <= ?",
        ("p:project", 1.0),
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "PRIMARY KEY (subject=? AND at<?)" in details, details


def test_requests_in_flight_are_read_from_an_index() -> None:
    conn = _migrated()
    plan = conn.execute(f"EXPLAIN QUERY PLAN {_PROJECT_IN_FLIGHT}", ("p", 1.0)).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "reservations_project (project_id=?)" in details, details


# One step of traffic: admit at a second with a token bound, or end the n-th admitted
# request (settle with tokens used, release, or take back).
_ADMIT = st.tuples(st.just("admit"), st.integers(min_value=0, max_value=200), st.integers(0, 50))
_END = st.tuples(
    st.sampled_from(["settle", "release", "undo"]),
    st.integers(min_value=0, max_value=40),
    st.integers(0, 50),
)


@given(
    steps=st.lists(st.one_of(_ADMIT, _END), max_size=40),
    nows=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=6),
)
@settings(max_examples=200, deadline=None)
def test_the_window_counts_match_a_recount(
    steps: list[tuple[str, int, int]], nows: list[int]
) -> None:
    conn = _migrated()
    subject = "p:project"
    # (at, tokens counted now, still counted as a request, still in flight) per admission
    admitted: list[tuple[float, int, bool, bool]] = []
    reservations: list[Reservation] = []
    counted_at = -1.0  # the clock moves forward only: admissions count in order
    for action, first, second in steps:
        if action == "admit":
            at = max(float(first), counted_at)
            counted_at = at
            _rate_count(conn, subject, _PROJECT_IN_FLIGHT, "project", at, 0.0)
            claim = Claim(
                key_id="key",
                organization_id=None,
                amount=Decimal(0),
                project_id="project",
                project_limits=RateLimits(rpm=10**9),
                tokens=second,
                now=at,
            )
            before = RateState(project=RateCount(requests=0, tokens=0, parallel=0))
            after = _count_admission(conn, claim, before)
            reservations.append(
                Reservation(
                    id=f"r{len(reservations)}",
                    key_id="key",
                    organization_id=None,
                    amount=Decimal(0),
                    project_id="project",
                    rate=after,
                    rate_at=at,
                    rate_tokens=second,
                )
            )
            admitted.append((at, second, True, True))
            continue
        if not reservations or first >= len(reservations):
            continue
        at, _, _, flying = admitted[first]
        if not flying:
            continue  # each request ends once
        reservation = reservations[first]
        if action == "settle":
            _correct_rate_windows(conn, reservation, 0, second - reservation.rate_tokens)
            admitted[first] = (at, second, True, False)
        elif action == "release":
            _correct_rate_windows(conn, reservation, 0, -reservation.rate_tokens)
            admitted[first] = (at, 0, True, False)
        else:
            _correct_rate_windows(conn, reservation, -1, -reservation.rate_tokens)
            admitted[first] = (at, 0, False, False)
    for now in sorted(nows):
        if now < counted_at:
            continue
        count = _rate_count(conn, subject, _PROJECT_IN_FLIGHT, "project", float(now), 0.0)
        inside = [
            (at, tokens)
            for at, tokens, counted, _ in admitted
            if counted and at > now - RATE_WINDOW_SECONDS
        ]
        assert count.requests == len(inside)
        assert count.tokens == sum(tokens for _, tokens in inside)
        assert count.oldest == (min(at for at, _ in inside) if inside else None)
