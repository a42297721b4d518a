"""The gateway's own error bodies (contract §1): the documented shape or the OpenAI one,
and on the Anthropic Messages API (`/v1/messages`) always Anthropic's.

Why Anthropic's envelope there whatever `error_format` says: Anthropic clients (the
`anthropic` SDKs, Claude Code) read `error.type` and `error.message` from
`{"type": "error", "error": {...}}` and show nothing useful for another shape, and no
client of that API expects the documented `{"error": true, ...}`. The message text is
the documented one either way; the SDK picks its exception class from the status
(401 `AuthenticationError`, 403 `PermissionDeniedError`, ...). The OpenAI-compatible
routes, `/v1/responses` included, follow `error_format` as before.

Only rejections by the gateway use these; an upstream provider's error status and
body are passed through untouched.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "AnthropicError",
    "AnthropicErrorBody",
    "DocumentedError",
    "ErrorFormat",
    "OpenAIError",
    "OpenAIErrorBody",
    "anthropic_error_body",
    "error_body",
]

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


class AnthropicErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The inner object of Anthropic's error envelope."""

    type: str
    message: str


class AnthropicError(msgspec.Struct, frozen=True, kw_only=True):
    """`{"type": "error", "error": {"type", "message"}}` (Anthropic's documented errors)."""

    type: str = "error"
    error: AnthropicErrorBody


# status -> Anthropic's error type (docs.anthropic.com, "Errors"); 5xx are api_error.
_ANTHROPIC_KINDS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    410: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}

_encoder = msgspec.json.Encoder()


def _openai_kind(status: int) -> tuple[str, str | None]:
    if status >= 500:
        return ("api_error", "api_error")
    return _OPENAI_KINDS.get(status, ("invalid_request_error", None))


def anthropic_error_body(status: int, message: str) -> bytes:
    """A gateway rejection on the Messages API, in Anthropic's envelope."""
    kind = _ANTHROPIC_KINDS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _encoder.encode(AnthropicError(error=AnthropicErrorBody(type=kind, message=message)))


def error_body(status: int, message: str, error_format: ErrorFormat = "documented") -> bytes:
    """The JSON bytes of a gateway rejection with `status` and the exact `message`."""
    if error_format == "openai":
        kind, code = _openai_kind(status)
        inner = OpenAIErrorBody(message=message, type=kind, code=code)
        return _encoder.encode(OpenAIError(error=inner))
    return _encoder.encode(DocumentedError(status=status, message=message))
