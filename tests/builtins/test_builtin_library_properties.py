"""Properties of the built-in library where OPA's behaviour has structure."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine.builtins import BUILTINS

KEYS = st.text(alphabet="abcdef", min_size=1, max_size=3)
SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
DOCUMENTS = st.dictionaries(KEYS, SCALARS | st.dictionaries(KEYS, SCALARS, max_size=3), max_size=4)


def call(name: str, *args: Any) -> Any:
    return BUILTINS[name].fn(*args)


@settings(max_examples=60, deadline=None)
@given(document=DOCUMENTS, key=KEYS, value=SCALARS)
def test_json_patch_add_then_json_remove_gives_the_document_back(
    document: dict[str, Any], key: str, value: Any
) -> None:
    if key in document:
        return  # `add` over an existing member replaces it: nothing to give back
    patched = call("json.patch", document, ({"op": "add", "path": f"/{key}", "value": value},))
    assert patched[key] == value
    assert call("json.remove", patched, (key,)) == document
    assert call("json.filter", patched, (key,)) == {key: value}


@settings(max_examples=60, deadline=None)
@given(
    day=st.dates(min_value=date(1760, 1, 1), max_value=date(2200, 12, 31)),  # int64 ns
    years=st.integers(-50, 50),
    months=st.integers(-30, 30),
)
def test_add_date_moves_time_date_by_calendar_months(day: date, years: int, months: int) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ns = int(start.timestamp()) * 1_000_000_000
    moved = call("time.add_date", ns, years, months, 0)
    year, month, day_of_month = call("time.date", moved)
    index = day.month - 1 + months
    want_year, want_month = day.year + years + index // 12, index % 12 + 1
    if day.day <= calendar.monthrange(want_year, want_month)[1]:
        assert (year, month, day_of_month) == (want_year, want_month, day.day)
    else:  # Go normalises Jan 31 + 1 month into March
        assert (year, month) > (want_year, want_month)
    if day.day <= 28:  # no normalisation either way: the move is undone exactly
        assert call("time.add_date", moved, -years, -months, 0) == ns


UNITS = st.sampled_from(["", "k", "ki", "m", "mi", "g", "gi", "t", "ti", "kb", "kib", "gb"])


@settings(max_examples=80, deadline=None)
@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6), unit=UNITS)
def test_parse_bytes_is_monotonic_in_the_amount(a: int, b: int, unit: str) -> None:
    small, large = sorted((a, b))
    parsed_small = call("units.parse_bytes", f"{small}{unit}")
    parsed_large = call("units.parse_bytes", f"{large}{unit}")
    assert parsed_small <= parsed_large
    assert (parsed_small == parsed_large) == (small == large)


@settings(max_examples=60, deadline=None)
@given(amount=st.integers(1, 10**6))
def test_binary_units_are_larger_than_decimal_ones(amount: int) -> None:
    for decimal_unit, binary_unit in (("k", "ki"), ("m", "mi"), ("g", "gi")):
        assert call("units.parse_bytes", f"{amount}{binary_unit}") > call(
            "units.parse_bytes", f"{amount}{decimal_unit}"
        )
