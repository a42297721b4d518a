"""The gateway's own error bodies (contract §1): the documented shape or the OpenAI one.

Only rejections by the gateway use these; an upstream provider's error status and
body are passed through untouched.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["DocumentedError", "ErrorFormat", "OpenAIError", "OpenAIErrorBody", "error_body"]

ErrorFormat = Literal["documented", "openai"]


class DocumentedError(msgspec.Struct, frozen=True, kw_only=True):
    """`{"error": true, "status": 401, "message": "..."}`; `status` equals the HTTP status."""

    error: bool = True
    status: int
    message: str


class OpenAIErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The inner object of the OpenAI error envelope."""

    message: str
    type: str
    param: None = None
    code: str | None


class OpenAIError(msgspec.Struct, frozen=True, kw_only=True):
    """`{"error": {"message", "type", "param": null, "code"}}`."""

    error: OpenAIErrorBody


# status -> (type, code) as the contract maps them; 5xx all become api_error.
_OPENAI_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("billing_error", "billing_error"),
    403: ("permission_denied", "permission_denied"),
    404: ("not_found", "not_found"),
    410: ("invalid_request_error", "gone"),
    413: ("request_too_large", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}

_encoder = msgspec.json.Encoder()


def _openai_kind(status: int) -> tuple[str, str | None]:
    if status >= 500:
        return ("api_error", "api_error")
    return _OPENAI_KINDS.get(status, ("invalid_request_error", None))


def error_body(status: int, message: str, error_format: ErrorFormat = "documented") -> bytes:
    """The JSON bytes of a gateway rejection with `status` and the exact `message`."""
    if error_format == "openai":
        kind, code = _openai_kind(status)
        inner = OpenAIErrorBody(message=message, type=kind, code=code)
        return _encoder.encode(OpenAIError(error=inner))
    return _encoder.encode(DocumentedError(status=status, message=message))
