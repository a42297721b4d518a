"""Error bodies in both formats (contract §1)."""

from __future__ import annotations

import json

import pytest

from proxy.errors import error_body


def test_documented_shape() -> None:
    assert json.loads(error_body(401, "Unauthorized: x")) == {
        "error": True,
        "status": 401,
        "message": "Unauthorized: x",
    }


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (401, "invalid_request_error", "invalid_api_key"),
        (402, "billing_error", "billing_error"),
        (403, "permission_denied", "permission_denied"),
        (404, "not_found", "not_found"),
        (413, "request_too_large", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (502, "api_error", "api_error"),
        (504, "api_error", "api_error"),
    ],
)
def test_openai_shape(status: int, kind: str, code: str) -> None:
    body = json.loads(error_body(status, "why", "openai"))
    assert body == {"error": {"message": "why", "type": kind, "param": None, "code": code}}
