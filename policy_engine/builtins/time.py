"""Time built-ins: time.parse_rfc3339_ns.

Only parsing: the engine has no clock; the current time reaches policies
through `input`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from policy_engine.builtins.base import BUILTIN_ERROR, Builtin, BuiltinError, builtin, want_string

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
    return whole_seconds * _NS_PER_SECOND + int((fraction or "0").ljust(9, "0"))


def _invalid(text: str) -> BuiltinError:
    return BuiltinError(
        BUILTIN_ERROR,
        f'time.parse_rfc3339_ns: parsing time "{text}" as "2006-01-02T15:04:05Z07:00": '
        "not a valid RFC 3339 timestamp",
    )


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "time.parse_rfc3339_ns",
        parse_rfc3339_ns,
        "(value: string) -> number",
        'time.parse_rfc3339_ns("2024-01-01T00:00:00Z")',
    ),
)
