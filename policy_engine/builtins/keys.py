"""Keys for the JWT and x509 built-ins: JWKs, PEM certificates and keys, via `cryptography`.

No cryptography is written here: parsing, signing and verifying are the
`cryptography` library's (pinned in pyproject.toml); this module only maps
OPA's key forms (a JWK object or JSON text, a JWKS, a PEM certificate or
public key) onto it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "PrivateKey",
    "PublicKey",
    "b64url_decode",
    "b64url_encode",
    "jwk_of_private_key",
    "private_key_from_jwk",
    "public_keys",
    "sign",
    "verify_signature",
]

_HASHES: Final[Mapping[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding (JWTs and JWKs omit it)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _integer(jwk: dict[str, Any], field: str) -> int:
    value = jwk.get(field)
    if not isinstance(value, str):
        raise ValueError(f"JWK field {field!r} is missing")
    return int.from_bytes(b64url_decode(value), "big")


def _public_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    kind = jwk.get("kty")
    if kind == "RSA":
        return rsa.RSAPublicNumbers(_integer(jwk, "e"), _integer(jwk, "n")).public_key()
    if kind == "EC":
        curve = _CURVES.get(str(jwk.get("crv")))
        if curve is None:
            raise ValueError(f"unsupported curve {jwk.get('crv')!r}")
        numbers = ec.EllipticCurvePublicNumbers(_integer(jwk, "x"), _integer(jwk, "y"), curve)
        return numbers.public_key()
    if kind == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk.get("x"))))
    raise ValueError(f"unsupported JWK key type {kind!r}")


def private_key_from_jwk(jwk: dict[str, Any]) -> PrivateKey | bytes:
    """A private key from a JWK (bytes for an `oct` secret)."""
    kind = jwk.get("kty")
    if kind == "oct":
        return b64url_decode(str(jwk.get("k", "")))
    if kind == "RSA":
        public = rsa.RSAPublicNumbers(_integer(jwk, "e"), _integer(jwk, "n"))
        p, q, d = _integer(jwk, "p"), _integer(jwk, "q"), _integer(jwk, "d")
        numbers = rsa.RSAPrivateNumbers(
            p=p,
            q=q,
            d=d,
            dmp1=rsa.rsa_crt_dmp1(d, p),
            dmq1=rsa.rsa_crt_dmq1(d, q),
            iqmp=rsa.rsa_crt_iqmp(p, q),
            public_numbers=public,
        )
        return numbers.private_key()
    if kind == "EC":
        curve = _CURVES.get(str(jwk.get("crv")))
        if curve is None:
            raise ValueError(f"unsupported curve {jwk.get('crv')!r}")
        return ec.derive_private_key(_integer(jwk, "d"), curve)
    if kind == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(str(jwk.get("d"))))
    raise ValueError(f"unsupported JWK key type {kind!r}")


def _b64_int(number: int) -> str:
    return b64url_encode(number.to_bytes((number.bit_length() + 7) // 8 or 1, "big"))


def jwk_of_private_key(key: Any) -> dict[str, str]:
    """A private key as a JWK object (what crypto.x509.parse_rsa_private_key returns)."""
    if isinstance(key, rsa.RSAPrivateKey):
        private = key.private_numbers()
        return {
            "kty": "RSA",
            "n": _b64_int(private.public_numbers.n),
            "e": _b64_int(private.public_numbers.e),
            "d": _b64_int(private.d),
            "p": _b64_int(private.p),
            "q": _b64_int(private.q),
            "dp": _b64_int(private.dmp1),
            "dq": _b64_int(private.dmq1),
            "qi": _b64_int(private.iqmp),
        }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.private_numbers()
        size = (key.curve.key_size + 7) // 8
        names = {type(curve).__name__: name for name, curve in _CURVES.items()}
        return {
            "kty": "EC",
            "crv": names.get(type(key.curve).__name__, key.curve.name),
            "x": b64url_encode(numbers.public_numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.public_numbers.y.to_bytes(size, "big")),
            "d": b64url_encode(numbers.private_value.to_bytes(size, "big")),
        }
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(public), "d": b64url_encode(raw)}
    raise ValueError("unsupported private key type")


def public_keys(text: str) -> list[PublicKey]:
    """The public keys of a PEM certificate or public key, a JWK or a JWKS (JSON text)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        document = json.loads(stripped)
        if not isinstance(document, dict):
            raise ValueError("a JWK must be an object")
        jwks = document.get("keys")
        if isinstance(jwks, list):
            return [_public_from_jwk(jwk) for jwk in jwks if isinstance(jwk, dict)]
        return [_public_from_jwk(document)]
    data = stripped.encode()
    found: object
    try:
        if b"CERTIFICATE" in data:
            found = x509.load_pem_x509_certificate(data).public_key()
        else:
            found = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as problem:
        raise ValueError(f"failed to parse a PEM key or certificate: {problem}") from None
    if not isinstance(
        found, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
    ):
        raise ValueError("unsupported public key type")
    return [found]


def verify_signature(alg: str, key: Any, signed: bytes, signature: bytes) -> bool:
    """Whether `signature` over `signed` verifies with `key` under JWS algorithm `alg`."""
    try:
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), _HASHES[alg[2:]]())
        elif alg.startswith("PS") and isinstance(key, rsa.RSAPublicKey):
            digest = _HASHES[alg[2:]]()
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO)
            key.verify(signature, signed, pss, digest)
        elif alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(_HASHES[alg[2:]]()))
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def sign(alg: str, key: Any, signing_input: bytes) -> bytes | None:
    """The JWS signature of `signing_input` with a private key; None if the key does not fit."""
    if alg.startswith(("RS", "PS")) and isinstance(key, rsa.RSAPrivateKey):
        digest = _HASHES[alg[2:]]()
        if alg.startswith("RS"):
            return key.sign(signing_input, padding.PKCS1v15(), digest)
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.DIGEST_LENGTH)
        return key.sign(signing_input, pss, digest)
    if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASHES[alg[2:]]())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    return None
