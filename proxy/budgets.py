"""Period budgets: a USD amount per calendar hour, day, week or month (pure, no clock).

A budget's window is a calendar period in the gateway's `budget_time_zone` (UTC by
default): the hour, the day from local midnight, the week from Monday's midnight, the
month from the 1st. Windows are identified by their start as an RFC 3339 UTC instant,
so the stores key their per-window counters by `(subject, window start)` and a new
window simply starts with no counter (zero usage). Local midnight that does not exist
(a DST gap) starts at the instant the clocks jump; one that happens twice starts at
the first.

The time always comes from the caller (the gateway's injectable clock): nothing here
reads the wall clock, so the tests move time instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from difflib import get_close_matches
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec

from proxy.money import money_text, plain_digits

__all__ = [
    "PERIODS",
    "Budget",
    "BudgetError",
    "Period",
    "format_budget",
    "parse_budget",
    "rfc3339",
    "time_zone",
    "window",
]

Period = Literal["hour", "day", "week", "month"]
PERIODS: tuple[Period, ...] = get_args(Period)


class BudgetError(ValueError):
    """A budget or time zone that cannot be used; the message names the field and the fix."""


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    """At most `amount` USD of settled usage per calendar `period`."""

    amount: Decimal
    period: Period


def parse_budget(text: str, what: str = "budget") -> Budget | None:
    """`5.00/day` -> Budget(5.00, day); `none` (or empty) -> None (no budget)."""
    value = text.strip()
    if value.lower() in ("", "none"):
        return None
    amount_text, sep, period = value.partition("/")
    period = period.strip().lower()
    if not sep or period not in PERIODS:
        raise BudgetError(
            f"{what}: `{text}` is not AMOUNT/PERIOD with PERIOD one of {', '.join(PERIODS)}; "
            "write it like `5.00/day`, or `none` for no budget"
        )
    try:
        amount = Decimal(amount_text.strip().removeprefix("$"))
    except ArithmeticError:
        raise BudgetError(
            f"{what}: `{amount_text.strip()}` is not a decimal amount; write it like `5.00/day`"
        ) from None
    if not amount.is_finite() or amount < 0:
        raise BudgetError(
            f"{what}: `{amount_text.strip()}` must be zero or a positive amount, like `5.00/day`"
        )
    return Budget(amount=plain_digits(amount), period=period)


def format_budget(budget: Budget | None) -> str:
    """`5.00/day`, or `none`: the form `parse_budget` reads back."""
    return "none" if budget is None else f"{money_text(budget.amount)}/{budget.period}"


# Zone names shown when one cannot be used: the default and one per inhabited continent.
ZONE_EXAMPLES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Africa/Lagos",
    "Australia/Sydney",
)


def time_zone(name: str, what: str = "budget_time_zone") -> ZoneInfo:
    """The IANA zone `name` (e.g. `Europe/Berlin`, `UTC`); an unknown one raises
    BudgetError naming `what`, the closest known names and how to list them all."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = _close_zone_names(name)
        guess = f" (did you mean {' or '.join(f'`{z}`' for z in close)}?)" if close else ""
        raise BudgetError(
            f"{what}: `{name}` is not an IANA time zone name{guess}; write a name of the tz "
            f"database (case matters), e.g. {', '.join(f'`{z}`' for z in ZONE_EXAMPLES)}; "
            "`python3 -c 'import zoneinfo; print(sorted(zoneinfo.available_timezones()))'` "
            "lists them all"
        ) from None


def _close_zone_names(name: str) -> list[str]:
    """Known zone names close to `name` (`europe/berlin`, `Europe/Berln`)."""
    known = {zone.lower(): zone for zone in available_timezones()}
    exact = known.get(name.strip().lower())
    if exact is not None:
        return [exact]
    return [known[z] for z in get_close_matches(name.strip().lower(), known, n=2, cutoff=0.8)]


def window(period: Period, at: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar window of `period` in `zone` holding the instant `at`: (start, end),
    both aware UTC datetimes, start <= at < end."""
    local = at.astimezone(zone)
    if period == "hour":
        # Local hours: in a zone offset by 30 minutes they start at :30 UTC. A repeated
        # hour (DST ends) keeps its fold, so each of the two is its own window.
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        return start, _next_hour(start, zone)
    if period == "day":
        day = local.date()
        nxt = day + timedelta(days=1)
    elif period == "week":
        day = local.date() - timedelta(days=local.weekday())  # Monday
        nxt = day + timedelta(days=7)
    else:
        day = local.date().replace(day=1)
        nxt = (day + timedelta(days=32)).replace(day=1)
    return _midnight(day, zone), _midnight(nxt, zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    # fold=0: an ambiguous midnight is the first one; a missing one maps (through the
    # offset before the gap) to the instant the clocks jump.
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _next_hour(start: datetime, zone: ZoneInfo) -> datetime:
    """The start of the local hour after the one starting at `start` (UTC): one hour on,
    unless a half-hour DST shift (Lord Howe Island) puts a local hour boundary sooner."""
    candidate = start + timedelta(hours=1)
    local = candidate.astimezone(zone)
    boundary = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return boundary if start < boundary < candidate else candidate


def rfc3339(moment: datetime) -> str:
    """`2027-01-01T00:00:00Z` (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
