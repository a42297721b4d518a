"""API tokens: generation, hashing for storage, constant-time comparison, safe display.

A token is shown to its owner once, at creation; the store keeps only its hash
(SHA-256, or HMAC-SHA256 when the server has a secret, so a stolen database
alone cannot be used to test guesses offline).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "TOKEN_PREFIX",
    "display_token",
    "generate_token",
    "hash_token",
    "hashes_match",
]

TOKEN_PREFIX = "llmgtwy_"  # noqa: S105 - a public prefix, not a secret
# 32 random bytes -> 43 URL-safe base64 characters (the contract asks for at least 40).
_RANDOM_BYTES = 32


def generate_token() -> str:
    """A fresh token: the `llmgtwy_` prefix and 43 URL-safe characters from the OS CSPRNG."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def hash_token(token: str, secret: bytes | None = None) -> str:
    """The hex digest stored for `token`: HMAC-SHA256 keyed by `secret`, else plain SHA-256."""
    data = token.encode("utf-8")
    if secret:
        return hmac.new(secret, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def hashes_match(stored_hash: str, candidate_hash: str) -> bool:
    """Compare two digests in constant time (no early exit that leaks a matching prefix)."""
    return hmac.compare_digest(stored_hash.encode("ascii"), candidate_hash.encode("ascii"))


def display_token(token: str) -> str:
    """What may be shown after creation: the prefix and first four random characters, then
    the last four (`llmgtwy_Ab12…9xYz`). Never enough to use or guess the token."""
    body = token.removeprefix(TOKEN_PREFIX)
    return f"{TOKEN_PREFIX}{body[:4]}…{body[-4:]}"
