"""Reading the token from the headers (contract §2)."""

from __future__ import annotations

import pytest
from litestar.datastructures import Headers

from proxy.credentials import read_token


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer tok"}, "tok"),
        ({"authorization": "bearer tok"}, "tok"),
        ({"Authorization": "BEARER   tok  "}, "tok"),
        ({"Authorization": "  Bearer\ttok"}, "tok"),
        ({"x-api-key": "  tok "}, "tok"),
        ({"X-API-KEY": "tok"}, "tok"),
        ({"Authorization": "Bearer a", "x-api-key": "b"}, "a"),
        ({"Authorization": "Bearer ", "x-api-key": "b"}, "b"),
        ({"Authorization": "Basic abc", "x-api-key": "b"}, "b"),
        ({"Authorization": "Bearer   "}, None),
        ({"x-api-key": "   "}, None),
        ({"Authorization": "Basic abc"}, None),
        ({}, None),
    ],
)
def test_read_token(headers: dict[str, str], expected: str | None) -> None:
    assert read_token(Headers(headers)) == expected
