"""JSON Web Tokens: io.jwt.decode, io.jwt.verify_* (HS, RS, PS, ES, EdDSA), io.jwt.decode_verify,
io.jwt.encode_sign and io.jwt.encode_sign_raw (RFC 7515 compact serialisation).

Signatures are made and checked by the `cryptography` library; keys are given
in the call (PEM certificates or public keys, JWKs, JWKS), never fetched.
verify_* answer false for a token whose signature does not match and fail
(eval_builtin_error) for one that is not a JWT at all, as OPA does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_object,
    want_string,
)
from policy_engine.builtins.encoding import parse_json
from policy_engine.builtins.x509_examples import EC_PUBLIC_JWK, RSA_PUBLIC_JWK
from policy_engine.runtime import Ctx
from policy_engine.values import thaw, to_json_text

__all__ = ["BUILTINS"]

# `cryptography` takes a fifth of a second to import: only the calls that need a key
# import policy_engine.builtins.keys (and so it), so loading a policy does not pay.


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding (JWTs omit it)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_HMAC_DIGESTS: Final = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_SUPPORTED: Final = frozenset(
    f"{family}{bits}" for family in ("HS", "RS", "PS", "ES") for bits in ("256", "384", "512")
) | {"EdDSA"}


class _Token:
    """The three parts of a compact JWS, decoded."""

    def __init__(self, name: str, text: str) -> None:
        parts = text.split(".")
        if len(parts) != 3:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: encoded JWT had no period separators")
        try:
            self.header = parse_json(b64url_decode(parts[0]).decode())
            self.payload_text = b64url_decode(parts[1]).decode()
            self.signature = b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError) as problem:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: JWT is malformed: {problem}") from None
        if not isinstance(self.header, dict):
            raise BuiltinError(BUILTIN_ERROR, f"{name}: JWT header is not an object")
        self.signed = f"{parts[0]}.{parts[1]}".encode()

    def payload(self, name: str) -> Any:
        try:
            payload = parse_json(self.payload_text)
        except ValueError as problem:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: JWT payload: {problem}") from None
        if not isinstance(payload, dict):
            raise BuiltinError(BUILTIN_ERROR, f"{name}: JWT payload is not an object")
        return payload


def _verify_token(name: str, alg: str, token: _Token, key_text: str) -> bool:
    if alg.startswith("HS"):
        expected = hmac.new(key_text.encode(), token.signed, _HMAC_DIGESTS[alg[2:]]).digest()
        return hmac.compare_digest(expected, token.signature)
    from policy_engine.builtins.keys import public_keys, verify_signature

    try:
        keys = public_keys(key_text)
    except ValueError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: {problem}") from None
    return any(verify_signature(alg, key, token.signed, token.signature) for key in keys)


def _verifier(alg: str) -> Callable[..., object]:
    name = f"io.jwt.verify_{alg.lower()}"

    def verify(jwt: object, key: object) -> bool:
        token = _Token(name, want_string(name, 1, jwt))
        return _verify_token(name, alg, token, want_string(name, 2, key))

    verify.__name__ = name.replace(".", "_")
    return verify


def decode(jwt: object) -> tuple[Any, Any, str]:
    """[header, payload, signature in hex] of a JWT, without checking its signature."""
    token = _Token("io.jwt.decode", want_string("io.jwt.decode", 1, jwt))
    return (token.header, token.payload("io.jwt.decode"), token.signature.hex())


_CONSTRAINTS: Final = frozenset({"cert", "secret", "alg", "iss", "aud", "time"})
_INVALID: Final[tuple[bool, dict[str, Any], dict[str, Any]]] = (False, {}, {})


def decode_verify(ctx: Ctx, jwt: object, constraints: object) -> tuple[bool, Any, Any]:
    """[valid, header, payload]: the signature checked with `cert` or `secret`, then alg, exp,
    nbf (at `time`, default the evaluation's time), iss and aud; [false, {}, {}] otherwise."""
    name = "io.jwt.decode_verify"
    text = want_string(name, 1, jwt)
    wanted = want_object(name, 2, constraints)
    for key in wanted:
        if key not in _CONSTRAINTS:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: unknown token validation constraint: {key}")
    if ("cert" in wanted) == ("secret" in wanted):
        raise BuiltinError(BUILTIN_ERROR, f"{name}: exactly one of cert and secret is required")
    token = _Token(name, text)
    alg = token.header.get("alg")
    if not isinstance(alg, str) or alg not in _SUPPORTED:
        return _INVALID
    if "alg" in wanted and wanted["alg"] != alg:
        return _INVALID
    if alg.startswith("HS") != ("secret" in wanted):
        return _INVALID
    key_text = wanted.get("cert", wanted.get("secret"))
    if not isinstance(key_text, str) or not _verify_token(name, alg, token, key_text):
        return _INVALID
    payload = token.payload(name)
    if not _claims_hold(ctx, payload, wanted):
        return _INVALID
    return (True, token.header, payload)


def _claims_hold(ctx: Ctx, payload: dict[str, Any], wanted: Any) -> bool:
    from policy_engine.builtins.time import now_ns  # the clock the evaluation fixed

    moment = wanted.get("time")
    now = Decimal(moment if moment is not None else now_ns(ctx)) / 1_000_000_000
    expires, not_before = payload.get("exp"), payload.get("nbf")
    if expires is not None and not (isinstance(expires, (int, Decimal)) and now < expires):
        return False
    if not_before is not None and not (
        isinstance(not_before, (int, Decimal)) and now >= not_before
    ):
        return False
    if "iss" in wanted and payload.get("iss") != wanted["iss"]:
        return False
    audience = payload.get("aud")
    if audience is None:
        return "aud" not in wanted
    audiences = [audience] if isinstance(audience, str) else list(audience)
    return "aud" in wanted and wanted["aud"] in audiences


# ---------------------------------------------------------------- signing


def _encode(name: str, header_text: str, payload_text: str, jwk: Any) -> str:
    from policy_engine.builtins.keys import private_key_from_jwk, sign

    try:
        header = json.loads(header_text)
        key = private_key_from_jwk(jwk)
    except ValueError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: {problem}") from None
    alg = header.get("alg") if isinstance(header, dict) else None
    if alg not in _SUPPORTED:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: unsupported signature algorithm {alg!r}")
    signing_input = f"{b64url_encode(header_text.encode())}.{b64url_encode(payload_text.encode())}"
    if str(alg).startswith("HS"):
        if not isinstance(key, bytes):
            raise BuiltinError(BUILTIN_ERROR, f"{name}: {alg} needs an `oct` JWK")
        signature = hmac.new(key, signing_input.encode(), _HMAC_DIGESTS[str(alg)[2:]]).digest()
    else:
        signed = sign(str(alg), key, signing_input.encode())
        if signed is None:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: the key does not fit algorithm {alg}")
        signature = signed
    return f"{signing_input}.{b64url_encode(signature)}"


def encode_sign(headers: object, payload: object, key: object) -> str:
    """A signed JWT from header and payload objects and a private key as a JWK object."""
    name = "io.jwt.encode_sign"
    header = want_object(name, 1, headers)
    body = want_object(name, 2, payload)
    jwk = want_object(name, 3, key)
    return _encode(name, to_json_text(header), to_json_text(body), thaw(jwk))


def encode_sign_raw(headers: object, payload: object, key: object) -> str:
    """A signed JWT from header and payload JSON texts (used as given) and a JWK text."""
    name = "io.jwt.encode_sign_raw"
    header_text = want_string(name, 1, headers)
    payload_text = want_string(name, 2, payload)
    try:
        jwk = json.loads(want_string(name, 3, key))
    except ValueError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: key: {problem}") from None
    if not isinstance(jwk, dict):
        raise operand_error(name, 3, "a JWK object", key)
    return _encode(name, header_text, payload_text, jwk)


# A documentation example: {"sub": "alice"} signed with HS256 and the secret "secret".
_TOKEN_EXAMPLE: Final = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."  # noqa: S105
    "c3brGQkxoiCgrl5LGiV0go9qgN0MtrdnDBCCfJ45f_Q"
)


def _rego_string(text: str) -> str:
    return json.dumps(text)


def _verifiers() -> tuple[Builtin, ...]:
    entries = []
    for family in ("HS", "RS", "PS", "ES"):
        for bits in ("256", "384", "512"):
            alg = f"{family}{bits}"
            key = "secret" if family == "HS" else "certificate"
            key_example = {"HS": "secret", "ES": EC_PUBLIC_JWK}.get(family, RSA_PUBLIC_JWK)
            entries.append(
                builtin(
                    f"io.jwt.verify_{alg.lower()}",
                    _verifier(alg),
                    f"(jwt: string, {key}: string) -> boolean",
                    f"io.jwt.verify_{alg.lower()}({_rego_string(_TOKEN_EXAMPLE)}, "
                    f"{_rego_string(key_example)})",
                    doc=f"Whether the JWT's {alg} signature verifies with the "
                    + ("secret." if family == "HS" else "PEM certificate, public key or JWK(S)."),
                )
            )
    entries.append(
        builtin(
            "io.jwt.verify_eddsa",
            _verifier("EdDSA"),
            "(jwt: string, certificate: string) -> boolean",
            f'io.jwt.verify_eddsa("{_TOKEN_EXAMPLE}", "{{\\"kty\\": \\"OKP\\", \\"crv\\": '
            '\\"Ed25519\\", \\"x\\": \\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\\"}")',
            doc="Whether the JWT's EdDSA (Ed25519) signature verifies with the key.",
        )
    )
    return tuple(entries)


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "io.jwt.decode",
        decode,
        "(jwt: string) -> array<object[any, any], object[any, any], string>",
        f'io.jwt.decode("{_TOKEN_EXAMPLE}")',
    ),
    *_verifiers(),
    builtin(
        "io.jwt.decode_verify",
        decode_verify,
        "(jwt: string, constraints: object[string, any])"
        " -> array<boolean, object[any, any], object[any, any]>",
        f'io.jwt.decode_verify("{_TOKEN_EXAMPLE}", {{"secret": "secret"}})',
        context=True,
    ),
    builtin(
        "io.jwt.encode_sign",
        encode_sign,
        "(headers: object[string, any], payload: object[string, any], key: object[string, any])"
        " -> string",
        'io.jwt.encode_sign({"alg": "HS256", "typ": "JWT"}, {"sub": "alice"},'
        ' {"kty": "oct", "k": "c2VjcmV0"})',
    ),
    builtin(
        "io.jwt.encode_sign_raw",
        encode_sign_raw,
        "(headers: string, payload: string, key: string) -> string",
        'io.jwt.encode_sign_raw(`{"alg":"HS256"}`, `{"sub":"alice"}`,'
        ' `{"kty":"oct","k":"c2VjcmV0"}`)',
    ),
)
