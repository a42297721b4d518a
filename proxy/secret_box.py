"""Secrets at rest, keyed by `GATEWAY_SECRET_KEY`.

With the variable set, two subkeys are derived from it with HKDF-SHA256 (each with
its own `info`, so neither reveals the other):

- token hashes become `hmac-sha256:<hex>`, an HMAC of the token's SHA-256 digest: a
  stolen database alone no longer lets anyone test token guesses offline. Being a
  function of the old digest, an existing database converts without the tokens
  (`gateway secrets migrate`, also done at start), and a key created by a process
  without the secret is still found by its plain digest and converted on first use;
- provider keys given by value are stored as `{"encrypted": <Fernet token>}`
  (AES-128-CBC + HMAC-SHA256 from `cryptography`, not home-made), decrypted only
  when a request is forwarded with them.

Without the variable the gateway stores plain SHA-256 digests and plain values, as
before, and warns at start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from proxy.config import MIN_SECRET_KEY_LENGTH as MIN_SECRET_LENGTH
from proxy.config import SECRET_KEY_ENV

__all__ = [
    "KEYED_PREFIX",
    "MIN_SECRET_LENGTH",
    "SECRET_KEY_ENV",
    "SecretBox",
    "SecretUnavailable",
    "box_for",
    "lookup_forms",
    "open_source",
    "protected_provider_keys",
    "stored_hash",
    "stored_source",
]

KEYED_PREFIX = "hmac-sha256:"
_TOKEN_INFO = b"llm-gateway/token-hash/v1"
_PROVIDER_INFO = b"llm-gateway/provider-keys/v1"


class SecretUnavailable(Exception):
    """A stored secret cannot be decrypted (no key, or not the key it was sealed with)."""


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


class SecretBox:
    """The subkeys derived from one `GATEWAY_SECRET_KEY` value."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"{SECRET_KEY_ENV} must be at least {MIN_SECRET_LENGTH} characters; generate "
                "one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        raw = secret.encode("utf-8")
        self._token_key = _derive(raw, _TOKEN_INFO)
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(raw, _PROVIDER_INFO)))

    def keyed(self, digest: str) -> str:
        """The stored form of a token whose plain SHA-256 hex digest is `digest`."""
        if digest.startswith(KEYED_PREFIX):
            return digest
        mac = hmac.new(self._token_key, digest.encode("ascii"), hashlib.sha256).hexdigest()
        return KEYED_PREFIX + mac

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise SecretUnavailable(
                f"a stored provider key cannot be decrypted with this {SECRET_KEY_ENV}; "
                "use the value it was stored with, or store the provider key again"
            ) from None

    def seal_source(self, source: Mapping[str, str]) -> dict[str, str]:
        """A provider-key source as stored: a literal `value` sealed, anything else as is."""
        if "value" in source:
            return {"encrypted": self.seal(source["value"])}
        return dict(source)


def box_for(secret_key: str | None) -> SecretBox | None:
    """The box for a configured `GATEWAY_SECRET_KEY`, None when it is not set."""
    return SecretBox(secret_key) if secret_key else None


def stored_source(source: Mapping[str, str], box: SecretBox | None) -> dict[str, str]:
    """A provider-key source in the form it is stored (sealed when there is a box)."""
    return box.seal_source(source) if box is not None else dict(source)


def stored_hash(digest: str, box: SecretBox | None) -> str:
    """A token's plain digest in the form it is stored (keyed when there is a box)."""
    return box.keyed(digest) if box is not None else digest


def protected_provider_keys(
    keys: dict[str, dict[str, str]], box: SecretBox
) -> tuple[dict[str, dict[str, str]], int]:
    """`keys` with every literal value sealed, and how many were."""
    sealed = sum("value" in source for source in keys.values())
    return {name: box.seal_source(source) for name, source in keys.items()}, sealed


def lookup_forms(handle: str, box: SecretBox | None) -> tuple[str, str]:
    """The two stored forms to look a key up by: `handle` is a token's plain digest (from
    `hash_token`) or an already stored form. Keyed first; the plain digest matches keys
    stored without the secret, which are then converted."""
    if box is None or handle.startswith(KEYED_PREFIX):
        return handle, handle
    return box.keyed(handle), handle


def open_source(source: Mapping[str, str], box: SecretBox | None) -> str | None:
    """The literal secret of a provider-key source (None when it names a variable)."""
    if "value" in source:
        return source["value"]
    if "encrypted" in source:
        if box is None:
            raise SecretUnavailable(
                f"a stored provider key is encrypted and {SECRET_KEY_ENV} is not set; "
                "start the gateway with the secret key it was stored with"
            )
        return box.open(source["encrypted"])
    return None
