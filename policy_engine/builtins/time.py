"""Time built-ins: time.now_ns, parse_rfc3339_ns, parse_ns, parse_duration_ns, date, clock,
weekday, add_date, diff, format.

Times are nanoseconds since the Unix epoch (int64, as in OPA); a time may be
given as `[ns, "Europe/Paris"]` (IANA zone names: the host's zone database, or
the pinned `tzdata` package on hosts without one, such as slim containers) and,
for time.format, `[ns, zone, layout]` with a Go layout. time.now_ns reads the
evaluation's `EvalOptions.now_ns`, or the clock once per evaluation: every call in
one evaluation sees the same time.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache
from time import time_ns
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_int64,
    want_number,
    want_string,
)
from policy_engine.builtins.go_time import LayoutError, format_time, parse_time
from policy_engine.runtime import Ctx
from policy_engine.values import is_number

__all__ = ["BUILTINS"]

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_SECOND: Final = 1_000_000_000


def parse_rfc3339_ns(value: object) -> int:
    """Nanoseconds since the Unix epoch for an RFC 3339 timestamp."""
    text = want_string("time.parse_rfc3339_ns", 1, value)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _invalid(text)
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction, _, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10, 11)
    offset = timedelta()
    if sign is not None:
        offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        offset = -offset if sign == "-" else offset
    try:  # out-of-range fields (month 13, offset +25:00) raise ValueError
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        raise _invalid(text) from None
    elapsed = moment - _EPOCH
    whole_seconds = elapsed.days * 86_400 + elapsed.seconds
    total = whole_seconds * _NS_PER_SECOND + int((fraction or "0").ljust(9, "0"))
    if not -(1 << 63) <= total < 1 << 63:
        raise BuiltinError(BUILTIN_ERROR, "time.parse_rfc3339_ns: time outside of valid range")
    return total


def _invalid(text: str) -> BuiltinError:
    return BuiltinError(
        BUILTIN_ERROR,
        f'time.parse_rfc3339_ns: parsing time "{text}" as "2006-01-02T15:04:05Z07:00": '
        "not a valid RFC 3339 timestamp",
    )


# ---------------------------------------------------------------- clock and calendar

_INT64: Final = (-(1 << 63), (1 << 63) - 1)
_UTC_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DURATION: Final = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": _NS_PER_SECOND,
    "m": 60 * _NS_PER_SECOND,
    "h": 3600 * _NS_PER_SECOND,
}


def now_ns(ctx: Ctx) -> int:
    """The current time in nanoseconds since the Unix epoch, the same throughout one evaluation."""
    fixed = ctx.options.now_ns
    if fixed is not None:
        return fixed
    found = ctx.fixed().get("time.now_ns")
    if found is None:
        found = ctx.fixed()["time.now_ns"] = time_ns()
    return int(found)


def _zone(name: str, zone: str) -> tzinfo:
    if zone in ("", "UTC"):
        return UTC
    if zone == "Local":
        return datetime.now().astimezone().tzinfo or UTC
    try:
        return _zone_info(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BuiltinError(BUILTIN_ERROR, f"{name}: unknown time zone {zone}") from None


@lru_cache(maxsize=64)
def _zone_info(zone: str) -> tzinfo:
    return ZoneInfo(zone)


def _nanos(name: str, value: object) -> int:
    number = want_number(name, 1, value)
    whole = int(number) if isinstance(number, int) else int(number.to_integral_value(ROUND_DOWN))
    if not _INT64[0] <= whole <= _INT64[1]:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: timestamp too big")
    return whole


def _moment(name: str, value: object) -> tuple[datetime, int, str | None]:
    """(local time, nanos past its second, layout) of `ns`, `[ns, tz]` or `[ns, tz, layout]`."""
    layout: str | None = None
    zone = ""
    if isinstance(value, (tuple, list)):
        if not 1 <= len(value) <= 3:
            raise operand_error(name, 1, "array of length 2 or 3", value)
        if len(value) >= 2:
            zone = want_string(name, 1, value[1])
        if len(value) == 3:
            layout = want_string(name, 1, value[2])
        value = value[0]
    elif not is_number(value):
        raise operand_error(name, 1, "one of {number, array}", value)
    total = _nanos(name, value)
    seconds, nanos = divmod(total, _NS_PER_SECOND)
    moment = (_UTC_EPOCH + timedelta(seconds=seconds)).astimezone(_zone(name, zone))
    return moment, nanos, layout


def _from_datetime(name: str, moment: datetime, nanos: int) -> int:
    elapsed = moment - _UTC_EPOCH
    total = (elapsed.days * 86_400 + elapsed.seconds) * _NS_PER_SECOND + nanos
    if not _INT64[0] <= total <= _INT64[1]:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: time outside of valid range")
    return total


def date(value: object) -> tuple[int, int, int]:
    """[year, month, day] of a time (`ns` or `[ns, tz]`)."""
    moment, _, _ = _moment("time.date", value)
    return (moment.year, moment.month, moment.day)


def clock(value: object) -> tuple[int, int, int]:
    """[hour, minute, second] of a time (`ns` or `[ns, tz]`)."""
    moment, _, _ = _moment("time.clock", value)
    return (moment.hour, moment.minute, moment.second)


def weekday(value: object) -> str:
    """The day of the week of a time (`ns` or `[ns, tz]`), e.g. "Monday"."""
    moment, _, _ = _moment("time.weekday", value)
    return _DAYS[moment.weekday()]


def format_ns(value: object) -> str:
    """A time (`ns`, `[ns, tz]` or `[ns, tz, layout]`) as text; RFC 3339 with nanoseconds
    by default."""
    moment, nanos, layout = _moment("time.format", value)
    return format_time(moment, nanos, layout or "RFC3339Nano")


def add_date(value: object, years: object, months: object, days: object) -> int:
    """The time plus years, months and days, normalised as Go's AddDate does (UTC)."""
    name = "time.add_date"
    total = _nanos(name, value)
    extra_years = want_int64(name, 2, years)
    extra_months = want_int64(name, 3, months)
    extra_days = want_int64(name, 4, days)
    seconds, nanos = divmod(total, _NS_PER_SECOND)
    moment = _UTC_EPOCH + timedelta(seconds=seconds)
    month_index = moment.month - 1 + extra_months
    year = moment.year + extra_years + month_index // 12
    try:
        first = moment.replace(year=year, month=month_index % 12 + 1, day=1)
        shifted = first + timedelta(days=moment.day - 1 + extra_days)
    except (ValueError, OverflowError):
        raise BuiltinError(BUILTIN_ERROR, f"{name}: time outside of valid range") from None
    return _from_datetime(name, shifted, nanos)


def diff(a: object, b: object) -> tuple[int, int, int, int, int, int]:
    """[years, months, days, hours, minutes, seconds] between two times, counted on a calendar."""
    first, first_nanos, _ = _moment("time.diff", a)
    second, second_nanos, _ = _moment("time.diff", b)
    second = second.astimezone(first.tzinfo)  # both counted in the first time's zone
    if (first, first_nanos) > (second, second_nanos):
        first, second = second, first
    years = second.year - first.year
    months = second.month - first.month
    days = second.day - first.day
    hours = second.hour - first.hour
    minutes = second.minute - first.minute
    seconds = second.second - first.second
    if seconds < 0:
        seconds, minutes = seconds + 60, minutes - 1
    if minutes < 0:
        minutes, hours = minutes + 60, hours - 1
    if hours < 0:
        hours, days = hours + 24, days - 1
    if days < 0:
        days += calendar.monthrange(first.year, first.month)[1]
        months -= 1
    if months < 0:
        months, years = months + 12, years - 1
    return (years, months, days, hours, minutes, seconds)


def parse_ns(layout: object, value: object) -> int:
    """Nanoseconds since the epoch of a time written in a Go layout (UTC unless it says)."""
    form = want_string("time.parse_ns", 1, layout)
    text = want_string("time.parse_ns", 2, value)
    try:
        moment, nanos = parse_time(form, text, UTC)
    except LayoutError as problem:
        raise BuiltinError(
            BUILTIN_ERROR, f'time.parse_ns: parsing time "{text}" as "{form}": {problem}'
        ) from None
    return _from_datetime("time.parse_ns", moment, nanos)


def parse_duration_ns(value: object) -> int:
    """Nanoseconds in a Go duration such as "1h30m", "1.5s" or "-300ms"."""
    text = want_string("time.parse_duration_ns", 1, value)
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0
    position, total = 0, Decimal(0)
    while position < len(body):
        match = _DURATION.match(body, position)
        if match is None or match.group(1) in ("", "."):
            raise BuiltinError(
                BUILTIN_ERROR, f'time.parse_duration_ns: time: invalid duration "{text}"'
            )
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body:
        raise BuiltinError(
            BUILTIN_ERROR, f'time.parse_duration_ns: time: invalid duration "{text}"'
        )
    nanos = int(total)
    return -nanos if text.startswith("-") else nanos


_TIME = "x: number | array<number, string>"

BUILTINS: tuple[Builtin, ...] = (
    builtin("time.now_ns", now_ns, "() -> number", "time.now_ns()", context=True),
    builtin(
        "time.parse_rfc3339_ns",
        parse_rfc3339_ns,
        "(value: string) -> number",
        'time.parse_rfc3339_ns("2024-01-01T00:00:00Z")',
        doc="Nanoseconds since the Unix epoch of an RFC 3339 timestamp.",
    ),
    builtin(
        "time.parse_ns",
        parse_ns,
        "(layout: string, value: string) -> number",
        'time.parse_ns("2006-01-02", "2024-03-01")',
    ),
    builtin(
        "time.parse_duration_ns",
        parse_duration_ns,
        "(duration: string) -> number",
        'time.parse_duration_ns("1h30m")',
    ),
    builtin(
        "time.date",
        date,
        f"({_TIME}) -> array<number, number, number>",
        "time.date(1704067200000000000)",
    ),
    builtin(
        "time.clock",
        clock,
        f"({_TIME}) -> array<number, number, number>",
        'time.clock([1704067200000000000, "America/New_York"])',
    ),
    builtin("time.weekday", weekday, f"({_TIME}) -> string", "time.weekday(1704067200000000000)"),
    builtin(
        "time.add_date",
        add_date,
        "(ns: number, years: number, months: number, days: number) -> number",
        "time.add_date(1704067200000000000, 0, 1, 0)",
    ),
    builtin(
        "time.diff",
        diff,
        "(ns1: number | array<number, string>, ns2: number | array<number, string>)"
        " -> array<number, number, number, number, number, number>",
        "time.diff(1704067200000000000, 1706745600000000000)",
    ),
    builtin(
        "time.format",
        format_ns,
        "(x: number | array<number, string> | array<number, string, string>) -> string",
        'time.format([1704067200000000000, "UTC", "Mon, 02 Jan 2006"])',
    ),
)
