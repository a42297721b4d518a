"""JWTs and certificates: every signing algorithm round-trips through encode_sign and
verify_*, tampering and wrong keys are caught, decode_verify checks OPA's claims, and
x509 chains verify at the evaluation's time. Keys are made here, with `cryptography`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from policy_engine import Engine, EvalOptions
from policy_engine.builtins.keys import jwk_of_private_key
from policy_engine.builtins.x509_examples import CSR_PEM, LEAF_PEM, ROOT_PEM

JAN_2024 = 1_704_067_200_000_000_000


def evaluate(expression: str, now_ns: int = JAN_2024, **bindings: Any) -> Any:
    lets = "".join(f"\t{name} := {json.dumps(value)}\n" for name, value in bindings.items())
    module = f"package t\n\nx := value if {{\n{lets}\tvalue := {expression}\n}}\n"
    rows = Engine.from_sources({"t.rego": module}).query(
        "x = data.t.x", strict=True, options=EvalOptions(now_ns=now_ns)
    )
    return rows[0]["x"] if rows else None


def _public_pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


KEYS = {
    "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS384": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate(),
}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_signed_tokens_verify_with_their_public_key_only(alg: str) -> None:
    key = KEYS[alg]
    token = evaluate(
        "io.jwt.encode_sign(header, payload, jwk)",
        header={"alg": alg, "typ": "JWT"},
        payload={"sub": "alice"},
        jwk=jwk_of_private_key(key),
    )
    verify = f"io.jwt.verify_{alg.lower()}(token, cert)"
    assert evaluate(verify, token=token, cert=_public_pem(key)) is True
    other = KEYS["RS256" if alg != "RS256" else "PS384"]
    assert evaluate(verify, token=token, cert=_public_pem(other)) is False
    head, body, signature = token.split(".")
    forged = f"{head}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{signature}"
    assert evaluate(verify, token=forged, cert=_public_pem(key)) is False
    header, payload, _ = evaluate("io.jwt.decode(token)", token=token)
    assert header["alg"] == alg and payload == {"sub": "alice"}


def test_a_jwks_verifies_when_any_of_its_keys_does() -> None:
    key = KEYS["ES256"]
    token = evaluate(
        'io.jwt.encode_sign({"alg": "ES256"}, {"sub": "a"}, jwk)',
        jwk=jwk_of_private_key(key),
    )
    public = {k: v for k, v in jwk_of_private_key(key).items() if k != "d"}
    jwks = json.dumps({"keys": [public]})
    assert evaluate("io.jwt.verify_es256(token, jwks)", token=token, jwks=jwks) is True


def test_a_malformed_token_is_an_error_not_false() -> None:
    from policy_engine import EvalError

    with pytest.raises(EvalError, match=r"io\.jwt\.verify_hs256"):
        evaluate('io.jwt.verify_hs256("not-a-jwt", "secret")')


def _hs256(payload: dict[str, Any]) -> str:
    token: str = evaluate(
        'io.jwt.encode_sign({"alg": "HS256"}, payload, {"kty": "oct", "k": "c2VjcmV0"})',
        payload=payload,
    )
    return token


@pytest.mark.parametrize(
    ("claims", "constraints", "valid"),
    [
        ({"exp": 1704067300}, {"secret": "secret"}, True),
        ({"exp": 1704067100}, {"secret": "secret"}, False),  # expired at the evaluation's time
        ({"nbf": 1704067300}, {"secret": "secret"}, False),  # not yet valid
        ({"exp": 1704067100}, {"secret": "secret", "time": 1704067000000000000}, True),
        ({"iss": "a"}, {"secret": "secret", "iss": "b"}, False),
        ({"aud": ["x", "y"]}, {"secret": "secret", "aud": "y"}, True),
        ({"aud": "x"}, {"secret": "secret"}, False),  # an audience the caller did not name
        ({}, {"secret": "secret", "aud": "x"}, False),
        ({}, {"secret": "wrong"}, False),
        ({}, {"secret": "secret", "alg": "HS512"}, False),
    ],
)
def test_decode_verify_checks_signature_then_claims(
    claims: dict[str, Any], constraints: dict[str, Any], valid: bool
) -> None:
    result = evaluate(
        "io.jwt.decode_verify(token, constraints)", token=_hs256(claims), constraints=constraints
    )
    assert result[0] is valid
    assert (result[2] == claims) if valid else (result[1:] == [{}, {}])


def test_a_certificate_chain_verifies_at_the_evaluations_time() -> None:
    chain = ROOT_PEM + LEAF_PEM
    valid, certificates = evaluate("crypto.x509.parse_and_verify_certificates(c)", c=chain)
    assert valid is True
    assert [c["Subject"]["CommonName"] for c in certificates] == [
        "Example Root",
        "gateway.example.com",
    ]
    before = 1_600_000_000_000_000_000  # 2020: not yet valid
    check = "crypto.x509.parse_and_verify_certificates(c)"
    assert evaluate(check, now_ns=before, c=chain) == [False, []]
    assert evaluate(check, c=LEAF_PEM + ROOT_PEM) == [False, []]  # leaf first: not a chain


def test_certificates_and_requests_are_described() -> None:
    (leaf,) = evaluate("crypto.x509.parse_certificates(c)", c=LEAF_PEM)
    assert leaf["DNSNames"] == ["gateway.example.com"]
    assert leaf["Issuer"]["CommonName"] == "Example Root"
    assert leaf["NotAfter"] == "2124-01-01T00:00:00Z"
    assert leaf["IsCA"] is False
    request = evaluate("crypto.x509.parse_certificate_request(c)", c=CSR_PEM)
    assert request["Subject"]["Organization"] == ["Example"]


def test_private_keys_become_jwks_that_sign() -> None:
    key = KEYS["RS256"]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    jwk = evaluate("crypto.x509.parse_rsa_private_key(pem)", pem=pem)
    assert jwk["kty"] == "RSA"
    token = evaluate('io.jwt.encode_sign({"alg": "RS256"}, {}, jwk)', jwk=jwk)
    assert evaluate("io.jwt.verify_rs256(t, c)", t=token, c=_public_pem(key)) is True
    assert [k["kty"] for k in evaluate("crypto.parse_private_keys(pem)", pem=pem)] == ["RSA"]
