"""Go's reference-time layouts ("2006-01-02T15:04:05Z07:00"), for time.format and time.parse_ns.

A layout is text in which the parts of Go's reference time (Mon Jan 2 15:04:05
MST 2006) stand for the fields of a time. `tokens` splits a layout once;
`format` and `parse` walk the tokens. Only what Go documents is supported;
an unknown layout part is literal text, as in Go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Final

__all__ = ["NAMED_LAYOUTS", "LayoutError", "format_time", "parse_time", "tokens"]

NAMED_LAYOUTS: Final = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
    "Kitchen": "3:04PM",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
    "DateTime": "2006-01-02 15:04:05",
    "DateOnly": "2006-01-02",
    "TimeOnly": "15:04:05",
}

# Longest first, so "January" wins over "Jan" and "2006" over "2".
_TOKEN: Final = re.compile(
    r"January|Monday|Z07:00:00|-07:00:00|Z070000|-070000|Z07:00|-07:00|Z0700|-0700|Z07|-07"
    r"|[.,](?:0+|9+)(?!\d)|2006|002|Jan|Mon|MST|__2|_2|06|01|02|03|04|05|15|PM|pm|1|2|3|4|5"
)
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class LayoutError(ValueError):
    """A value does not match its layout."""


@lru_cache(maxsize=128)
def tokens(layout: str) -> tuple[tuple[bool, str], ...]:
    """(is_field, text) pieces of a layout; fields are reference-time parts."""
    layout = NAMED_LAYOUTS.get(layout, layout)
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in _TOKEN.finditer(layout):
        if match.start() > position:
            pieces.append((False, layout[position : match.start()]))
        pieces.append((True, match.group(0)))
        position = match.end()
    if position < len(layout):
        pieces.append((False, layout[position:]))
    return tuple(pieces)


def _offset_text(moment: datetime, field: str) -> str:
    offset = moment.utcoffset() or timedelta()
    seconds = int(offset.total_seconds())
    if field.startswith("Z") and seconds == 0:
        return "Z"
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    hours, minutes, rest = seconds // 3600, seconds // 60 % 60, seconds % 60
    core = field.lstrip("Z-")
    if core == "07":
        return f"{sign}{hours:02d}"
    if core == "0700":
        return f"{sign}{hours:02d}{minutes:02d}"
    if core == "07:00":
        return f"{sign}{hours:02d}:{minutes:02d}"
    if core == "070000":
        return f"{sign}{hours:02d}{minutes:02d}{rest:02d}"
    return f"{sign}{hours:02d}:{minutes:02d}:{rest:02d}"


def _fraction(nanos: int, field: str) -> str:
    digits = f"{nanos:09d}"[: len(field) - 1]
    if field[1] == "9":
        digits = digits.rstrip("0")
        return field[0] + digits if digits else ""
    return field[0] + digits


def format_time(moment: datetime, nanos: int, layout: str) -> str:
    """The time (with `nanos` nanoseconds past its second) written in a Go layout."""
    out: list[str] = []
    hour12 = moment.hour % 12 or 12
    for is_field, text in tokens(layout):
        if not is_field:
            out.append(text)
            continue
        out.append(_field(moment, nanos, text, hour12))
    return "".join(out)


def _field(moment: datetime, nanos: int, text: str, hour12: int) -> str:
    simple = {
        "2006": f"{moment.year:04d}",
        "06": f"{moment.year % 100:02d}",
        "January": _MONTHS[moment.month - 1],
        "Jan": _MONTHS[moment.month - 1][:3],
        "01": f"{moment.month:02d}",
        "1": str(moment.month),
        "Monday": _DAYS[moment.weekday()],
        "Mon": _DAYS[moment.weekday()][:3],
        "02": f"{moment.day:02d}",
        "_2": f"{moment.day:2d}",
        "2": str(moment.day),
        "002": f"{moment.timetuple().tm_yday:03d}",
        "__2": f"{moment.timetuple().tm_yday:3d}",
        "15": f"{moment.hour:02d}",
        "03": f"{hour12:02d}",
        "3": str(hour12),
        "04": f"{moment.minute:02d}",
        "4": str(moment.minute),
        "05": f"{moment.second:02d}",
        "5": str(moment.second),
        "PM": "PM" if moment.hour >= 12 else "AM",
        "pm": "pm" if moment.hour >= 12 else "am",
        "MST": moment.tzname() or "UTC",
    }
    if text in simple:
        return simple[text]
    if text[0] in ".,":
        return _fraction(nanos, text)
    return _offset_text(moment, text)


# ---------------------------------------------------------------- parsing


class _Fields:
    def __init__(self) -> None:
        self.year = 1
        self.month = 1
        self.day = 1
        self.hour = 0
        self.minute = 0
        self.second = 0
        self.nanos = 0
        self.pm: bool | None = None
        self.offset: int | None = None


def _number(value: str, at: int, width: int, exact: bool) -> tuple[int, int]:
    pattern = rf"\d{{{width}}}" if exact else rf"\d{{1,{width}}}"
    match = re.compile(pattern).match(value, at)
    if match is None:
        raise LayoutError(f"cannot parse {value[at:]!r}")
    return int(match.group(0)), match.end()


def _name(value: str, at: int, names: Sequence[str]) -> tuple[int, int]:
    for index, name in enumerate(names):
        if value[at : at + len(name)].lower() == name.lower():
            return index, at + len(name)
    raise LayoutError(f"cannot parse {value[at:]!r}")


def _parse_offset(value: str, at: int, field: str) -> tuple[int, int]:
    if field.startswith("Z") and value[at : at + 1] == "Z":
        return 0, at + 1
    match = re.compile(r"([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?").match(value, at)
    if match is None:
        raise LayoutError(f"cannot parse {value[at:]!r} as a zone offset")
    hours, minutes, seconds = (int(part or 0) for part in match.group(2, 3, 4))
    total = hours * 3600 + minutes * 60 + seconds
    return (-total if match.group(1) == "-" else total), match.end()


def parse_time(layout: str, value: str, zone: tzinfo) -> tuple[datetime, int]:
    """The time a value written in a Go layout stands for, and its nanoseconds."""
    fields = _Fields()
    at = 0
    months = _MONTHS
    for is_field, text in tokens(layout):
        if not is_field:
            if not value.startswith(text, at):
                raise LayoutError(f"cannot parse {value[at:]!r} as {text!r}")
            at += len(text)
            continue
        at = _parse_field(fields, value, at, text, months)
        # Go accepts a fraction after seconds even when the layout has none.
        if text in ("05", "5") and value[at : at + 1] in (".", ","):
            match = re.compile(r"[.,](\d+)").match(value, at)
            if match is not None:
                fields.nanos = int(match.group(1)[:9].ljust(9, "0"))
                at = match.end()
    if at != len(value):
        raise LayoutError(f"extra text: {value[at:]!r}")
    hour = fields.hour
    if fields.pm is not None:
        hour = hour % 12 + (12 if fields.pm else 0)
    tz = zone if fields.offset is None else timezone(timedelta(seconds=fields.offset))
    try:
        moment = datetime(
            fields.year, fields.month, fields.day, hour, fields.minute, fields.second, tzinfo=tz
        )
    except ValueError as problem:
        raise LayoutError(str(problem)) from None
    return moment, fields.nanos


def _parse_field(fields: _Fields, value: str, at: int, text: str, months: Sequence[str]) -> int:
    if text == "2006":
        fields.year, at = _number(value, at, 4, exact=True)
    elif text == "06":
        short, at = _number(value, at, 2, exact=True)
        fields.year = short + (1900 if short >= 69 else 2000)
    elif text in ("January", "Jan"):
        index, at = _name(value, at, months if text == "January" else [m[:3] for m in months])
        fields.month = index + 1
    elif text in ("01", "1"):
        fields.month, at = _number(value, at, 2, exact=text == "01")
    elif text in ("Monday", "Mon"):
        _, at = _name(value, at, _DAYS if text == "Monday" else [d[:3] for d in _DAYS])
    elif text in ("02", "2", "_2"):
        if text == "_2" and value[at : at + 1] == " ":
            at += 1
        fields.day, at = _number(value, at, 2, exact=text == "02")
    elif text in ("002", "__2"):
        _, at = _number(value, at, 3, exact=text == "002")
    elif text in ("15", "03", "3"):
        fields.hour, at = _number(value, at, 2, exact=text != "3")
    elif text in ("04", "4"):
        fields.minute, at = _number(value, at, 2, exact=text == "04")
    elif text in ("05", "5"):
        fields.second, at = _number(value, at, 2, exact=text == "05")
    elif text in ("PM", "pm"):
        marker = value[at : at + 2].upper()
        if marker not in ("AM", "PM"):
            raise LayoutError(f"cannot parse {value[at:]!r} as AM/PM")
        fields.pm, at = marker == "PM", at + 2
    elif text == "MST":
        match = re.compile(r"[A-Z]{3,5}|UTC").match(value, at)
        if match is None:
            raise LayoutError(f"cannot parse {value[at:]!r} as a zone name")
        if match.group(0) in ("UTC", "GMT"):
            fields.offset = 0
        at = match.end()
    elif text[0] in ".,":
        match = re.compile(r"[.,](\d+)").match(value, at)
        if match is None:
            raise LayoutError(f"cannot parse {value[at:]!r} as a fraction")
        fields.nanos = int(match.group(1)[:9].ljust(9, "0"))
        at = match.end()
    else:
        fields.offset, at = _parse_offset(value, at, text)
    return at
