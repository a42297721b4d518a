"""Reading the client's API token from the request headers (contract §2).

`Authorization: Bearer <token>` wins; otherwise `x-api-key: <token>`. The scheme
word is matched case-insensitively, surrounding white space is ignored and an
empty token counts as none.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["read_token"]

_BEARER = "bearer"


def read_token(headers: Mapping[str, str]) -> str | None:
    """The token the client sent, or None. `headers` must be case-insensitive (ASGI/Litestar)."""
    authorization = headers.get("authorization")
    if authorization is not None:
        parts = authorization.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == _BEARER:
            token = parts[1].strip()
            if token:
                return token
    api_key = headers.get("x-api-key")
    if api_key is not None:
        token = api_key.strip()
        if token:
            return token
    return None
