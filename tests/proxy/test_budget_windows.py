"""The calendar arithmetic of period budgets (proxy/budgets.py): windows in UTC and in a
configured zone, across DST changes, month ends and leap days; budgets as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.budget_facts import WindowTimes
from proxy.budgets import (
    PERIODS,
    Budget,
    BudgetError,
    Period,
    format_budget,
    parse_budget,
    rfc3339,
    time_zone,
    window,
)

UTC_ZONE = time_zone("UTC")
BERLIN = time_zone("Europe/Berlin")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _window(period: Period, at: str, zone: str = "UTC") -> tuple[str, str]:
    start, end = window(period, _at(at), time_zone(zone))
    return rfc3339(start), rfc3339(end)


@pytest.mark.parametrize(
    ("period", "at", "expected"),
    [
        ("hour", "2027-03-01T10:59:59Z", ("2027-03-01T10:00:00Z", "2027-03-01T11:00:00Z")),
        ("day", "2027-03-01T00:00:00Z", ("2027-03-01T00:00:00Z", "2027-03-02T00:00:00Z")),
        ("day", "2027-02-28T23:59:59Z", ("2027-02-28T00:00:00Z", "2027-03-01T00:00:00Z")),
        # Weeks start on Monday; 2027-03-07 is a Sunday.
        ("week", "2027-03-07T23:00:00Z", ("2027-03-01T00:00:00Z", "2027-03-08T00:00:00Z")),
        ("week", "2027-03-08T00:00:00Z", ("2027-03-08T00:00:00Z", "2027-03-15T00:00:00Z")),
        ("month", "2027-12-31T23:59:59Z", ("2027-12-01T00:00:00Z", "2028-01-01T00:00:00Z")),
        ("month", "2028-02-29T12:00:00Z", ("2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z")),
        ("month", "2027-01-31T12:00:00Z", ("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")),
    ],
)
def test_utc_windows(period: Period, at: str, expected: tuple[str, str]) -> None:
    assert _window(period, at) == expected


def test_a_zone_moves_the_boundaries() -> None:
    # 23:30 UTC on 31 March is already 1 April in Berlin (CEST, +2).
    assert _window("month", "2027-03-31T23:30:00Z", "Europe/Berlin") == (
        "2027-03-31T22:00:00Z",
        "2027-04-30T22:00:00Z",
    )
    assert _window("day", "2027-03-31T21:59:59Z", "Europe/Berlin") == (
        "2027-03-30T22:00:00Z",
        "2027-03-31T22:00:00Z",
    )
    # India is +5:30: its hours start at half past in UTC.
    assert _window("hour", "2027-03-01T10:10:00Z", "Asia/Kolkata") == (
        "2027-03-01T09:30:00Z",
        "2027-03-01T10:30:00Z",
    )


def test_dst_days_are_23_and_25_hours_long() -> None:
    # Spring forward (28 March 2027, 02:00 -> 03:00 in Berlin): a 23-hour day.
    start, end = _window("day", "2027-03-28T12:00:00Z", "Europe/Berlin")
    assert (start, end) == ("2027-03-27T23:00:00Z", "2027-03-28T22:00:00Z")
    # Fall back (31 October 2027, 03:00 -> 02:00): a 25-hour day.
    start, end = _window("day", "2027-10-31T12:00:00Z", "Europe/Berlin")
    assert (start, end) == ("2027-10-30T22:00:00Z", "2027-10-31T23:00:00Z")
    # The week holding the change is 167 hours long.
    start_w, end_w = window("week", _at("2027-03-28T12:00:00Z"), BERLIN)
    assert end_w - start_w == timedelta(hours=167)


def test_the_repeated_hour_at_dst_end_is_two_windows() -> None:
    # 02:00-03:00 local happens twice on 31 October 2027: at 00:00 and 01:00 UTC.
    assert _window("hour", "2027-10-31T00:30:00Z", "Europe/Berlin") == (
        "2027-10-31T00:00:00Z",
        "2027-10-31T01:00:00Z",
    )
    assert _window("hour", "2027-10-31T01:30:00Z", "Europe/Berlin") == (
        "2027-10-31T01:00:00Z",
        "2027-10-31T02:00:00Z",
    )


def test_a_missing_midnight_starts_the_day_when_the_clocks_jump() -> None:
    # Havana springs forward at midnight: 14 March 2027 starts at 01:00 local (05:00 UTC).
    start, _ = _window("day", "2027-03-14T12:00:00Z", "America/Havana")
    assert start == "2027-03-14T05:00:00Z"


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
    ),
    period=st.sampled_from(PERIODS),
    zone=st.sampled_from(
        [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "America/Havana",
        ]
    ),
)
def test_windows_hold_the_moment_and_tile_time(moment: datetime, period: Period, zone: str) -> None:
    tz = time_zone(zone)
    start, end = window(period, moment, tz)
    assert start <= moment < end
    # The next window starts where this one ends: windows never overlap nor leave gaps.
    assert window(period, end, tz)[0] == end
    assert window(period, end - timedelta(microseconds=1), tz) == (start, end)


def test_budgets_as_text() -> None:
    assert parse_budget("5.00/day") == Budget(amount=Decimal("5.00"), period="day")
    assert parse_budget(" 12/Month ") == Budget(amount=Decimal("12"), period="month")
    assert parse_budget("none") is None
    assert format_budget(parse_budget("0.5/hour")) == "0.5/hour"
    assert format_budget(None) == "none"
    assert format_budget(parse_budget("1e3/day")) == "1000/day"  # not `1E+3/day`
    assert format_budget(parse_budget("2.5E+1/hour")) == "25/hour"
    assert format_budget(parse_budget("1e30/month")) == f"1{'0' * 30}/month"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("5/fortnight", "PERIOD one of hour, day, week, month"),
        ("5", "AMOUNT/PERIOD"),
        ("five/day", "`five` is not a decimal amount"),
        ("-1/day", "zero or a positive amount"),
        ("NaN/day", "zero or a positive amount"),
    ],
)
def test_bad_budgets_say_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(BudgetError, match="budget") as raised:
        parse_budget(text)
    assert says in str(raised.value)


def test_an_unknown_zone_is_named() -> None:
    with pytest.raises(BudgetError, match="budget_time_zone: `Mars/Olympus`"):
        time_zone("Mars/Olympus")


@given(
    moments=st.lists(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
        min_size=1,
        max_size=6,
    ),
    period=st.sampled_from(PERIODS),
)
@settings(max_examples=100, deadline=None)
def test_the_gateway_s_remembered_windows_are_the_calendar_s(
    moments: list[datetime], period: Period
) -> None:
    # The gateway works a second's windows out once (proxy/budget_facts.WindowTimes);
    # whatever order the request times come in, each gets its own second's window.
    times = WindowTimes(BERLIN)
    budget = Budget(amount=Decimal(1), period=period)
    for moment in [*moments, *moments]:
        text = rfc3339(moment.replace(microsecond=0, tzinfo=UTC))
        start, end = window(period, _at(text), BERLIN)
        got = times.window(budget, text)
        assert got is not None and (got.start, got.end) == (rfc3339(start), rfc3339(end))
    assert times.window(None, "2027-01-01T00:00:00Z") is None
