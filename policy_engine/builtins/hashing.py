"""Digests and MACs: crypto.md5, crypto.sha1, crypto.sha256, crypto.hmac.*, crypto.hmac.equal.

Hashes read the string's UTF-8 bytes and answer lower-case hexadecimal, as OPA does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from policy_engine.builtins.base import Builtin, builtin, want_string

__all__ = ["BUILTINS"]


def _digest(name: str, algorithm: str) -> Callable[..., object]:
    def apply(value: object) -> str:
        text = want_string(name, 1, value)
        return hashlib.new(algorithm, text.encode(), usedforsecurity=False).hexdigest()

    apply.__name__ = name.replace(".", "_")
    return apply


def _mac(name: str, algorithm: str) -> Callable[..., object]:
    def apply(value: object, key: object) -> str:
        message = want_string(name, 1, value).encode()
        secret = want_string(name, 2, key).encode()
        return hmac.new(secret, message, algorithm).hexdigest()

    apply.__name__ = name.replace(".", "_")
    return apply


def hmac_equal(mac1: object, mac2: object) -> bool:
    """Whether two MACs are equal, compared in constant time."""
    first = want_string("crypto.hmac.equal", 1, mac1).encode()
    second = want_string("crypto.hmac.equal", 2, mac2).encode()
    return hmac.compare_digest(first, second)


_HASH = "(x: string) -> string"
_HMAC = "(x: string, key: string) -> string"

BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "crypto.md5",
        _digest("crypto.md5", "md5"),
        _HASH,
        'crypto.md5("hello")',
        doc="The MD5 digest of the string, in hexadecimal.",
    ),
    builtin(
        "crypto.sha1",
        _digest("crypto.sha1", "sha1"),
        _HASH,
        'crypto.sha1("hello")',
        doc="The SHA-1 digest of the string, in hexadecimal.",
    ),
    builtin(
        "crypto.sha256",
        _digest("crypto.sha256", "sha256"),
        _HASH,
        'crypto.sha256("hello")',
        doc="The SHA-256 digest of the string, in hexadecimal.",
    ),
    builtin(
        "crypto.hmac.md5",
        _mac("crypto.hmac.md5", "md5"),
        _HMAC,
        'crypto.hmac.md5("message", "key")',
        doc="The HMAC-MD5 of the string with the key.",
    ),
    builtin(
        "crypto.hmac.sha1",
        _mac("crypto.hmac.sha1", "sha1"),
        _HMAC,
        'crypto.hmac.sha1("message", "key")',
        doc="The HMAC-SHA1 of the string with the key.",
    ),
    builtin(
        "crypto.hmac.sha256",
        _mac("crypto.hmac.sha256", "sha256"),
        _HMAC,
        'crypto.hmac.sha256("message", "key")',
        doc="The HMAC-SHA256 of the string with the key.",
    ),
    builtin(
        "crypto.hmac.sha512",
        _mac("crypto.hmac.sha512", "sha512"),
        _HMAC,
        'crypto.hmac.sha512("message", "key")',
        doc="The HMAC-SHA512 of the string with the key.",
    ),
    builtin(
        "crypto.hmac.equal",
        hmac_equal,
        "(mac1: string, mac2: string) -> boolean",
        'crypto.hmac.equal("a1b2", "a1b2")',
    ),
)
