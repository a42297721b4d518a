"""json.marshal / json.unmarshal, net.cidr_contains, time.parse_rfc3339_ns."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_engine.builtins import BUILTINS, BuiltinError
from policy_engine.values import equal

D = Decimal


def call(name: str, *args: object) -> Any:
    return BUILTINS[name].fn(*args)


def test_json_marshal_is_compact_sorted_and_exact() -> None:
    value = {"b": [1, D("250.50")], "a": frozenset({2, 1}), "c": True}
    assert call("json.marshal", value) == '{"a":[1,2],"b":[1,250.50],"c":true}'
    assert call("json.marshal", "é") == '"é"'


def test_json_unmarshal_reads_numbers_exactly() -> None:
    decoded = call("json.unmarshal", '{"usage": 0.1, "n": [1, 2.0, 1e2]}')
    assert equal(decoded, {"usage": D("0.1"), "n": (1, 2, 100)})
    assert type(decoded["n"]) is tuple
    assert type(decoded["n"][1]) is int


@pytest.mark.parametrize("text", ["{", "NaN", "[1,]", ""])
def test_json_unmarshal_of_bad_text_is_a_builtin_error(text: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call("json.unmarshal", text)
    assert raised.value.code == "eval_builtin_error"
    assert raised.value.message.startswith("json.unmarshal: ")


@pytest.mark.parametrize(
    ("cidr", "other", "expected"),
    [
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "11.1.2.3", False),
        ("10.0.0.0/8", "10.1.0.0/16", True),
        ("10.1.0.0/16", "10.0.0.0/8", False),
        ("127.0.0.1/32", "127.0.0.1", True),
        ("192.168.1.1/24", "192.168.1.200", True),
        ("2001:db8::/32", "2001:db8::1", True),
        ("2001:db8::/32", "10.0.0.1", False),
    ],
)
def test_cidr_contains(cidr: str, other: str, expected: bool) -> None:
    assert call("net.cidr_contains", cidr, other) is expected


@pytest.mark.parametrize(("cidr", "other"), [("nope", "10.0.0.1"), ("10.0.0.0/8", "10.0.0")])
def test_cidr_contains_bad_addresses(cidr: str, other: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call("net.cidr_contains", cidr, other)
    assert raised.value.code == "eval_builtin_error"
    assert "invalid" in raised.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-11-27T10:00:00Z", 1795773600 * 10**9),
        ("2026-11-27T11:00:00+01:00", 1795773600 * 10**9),
        ("1970-01-01T00:00:00.5Z", 500_000_000),
        ("1970-01-01T00:00:00.123456789123Z", 123_456_789),
        ("1969-12-31T23:59:59Z", -(10**9)),
    ],
)
def test_parse_rfc3339_ns(text: str, expected: int) -> None:
    assert call("time.parse_rfc3339_ns", text) == expected


@pytest.mark.parametrize(
    "text", ["2026-11-27", "2026-13-01T00:00:00Z", "2026-11-27T10:00:00", "2026-11-27T25:00:00Z"]
)
def test_parse_rfc3339_ns_rejects_other_text(text: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call("time.parse_rfc3339_ns", text)
    assert raised.value.code == "eval_builtin_error"
    assert text in raised.value.message


@given(
    st.datetimes(
        min_value=datetime(1678, 1, 1),  # nanoseconds since 1970 must fit an int64, as in OPA
        max_value=datetime(2261, 12, 31),
        timezones=st.just(UTC),
    )
)
def test_parse_rfc3339_ns_agrees_with_datetime(moment: datetime) -> None:
    text = moment.isoformat().replace("+00:00", "Z")
    expected = round(moment.timestamp()) if moment.microsecond == 0 else None
    nanoseconds = call("time.parse_rfc3339_ns", text)
    assert nanoseconds % 1000 == 0
    if expected is not None:
        assert nanoseconds == expected * 10**9
    assert nanoseconds // 1000 == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND


@pytest.mark.parametrize(
    "text", ["1677-09-21T00:12:43.145224191Z", "2262-04-11T23:47:16.854775808Z"]
)
def test_parse_rfc3339_ns_refuses_times_beyond_int64_nanoseconds(text: str) -> None:
    with pytest.raises(BuiltinError, match="time outside of valid range"):
        call("time.parse_rfc3339_ns", text)


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
