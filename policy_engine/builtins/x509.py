"""Certificates and keys: crypto.x509.parse_certificates, parse_and_verify_certificates,
parse_certificate_request, parse_rsa_private_key, and crypto.parse_private_keys.

Input is PEM text, or base64 of PEM or DER, as OPA accepts. A certificate is
described with the fields of Go's x509.Certificate that policies use (names,
validity, serial, key usages, SANs, CA flag). The work is done with
`cryptography` in policy_engine.builtins.certificates, imported on first call
so that loading a policy does not pay for it.
"""

from __future__ import annotations

from typing import Any

from policy_engine.builtins.base import Builtin, builtin
from policy_engine.builtins.x509_examples import (
    CSR_PEM,
    ED25519_KEY_PEM,
    LEAF_PEM,
    ROOT_PEM,
    RSA_KEY_PEM,
    b64,
)
from policy_engine.runtime import Ctx

__all__ = ["BUILTINS"]


def parse_certificates(certs: object) -> tuple[dict[str, Any], ...]:
    """The certificates in PEM text (or base64 of PEM or DER), each as an object."""
    from policy_engine.builtins import certificates

    return certificates.parse_certificates(certs)


def parse_and_verify_certificates(
    ctx: Ctx, certs: object
) -> tuple[bool, tuple[dict[str, Any], ...]]:
    """[true, certificates] when they form a chain (root first, leaf last) valid at the
    evaluation's time; [false, []] otherwise."""
    from policy_engine.builtins import certificates

    return certificates.parse_and_verify_certificates(ctx, certs)


def parse_certificate_request(csr: object) -> dict[str, Any]:
    """A certificate signing request (PEM, or base64 of PEM or DER) as an object."""
    from policy_engine.builtins import certificates

    return certificates.parse_certificate_request(csr)


def parse_rsa_private_key(pem: object) -> dict[str, str]:
    """An RSA private key (PEM, or base64 of PEM) as a JWK object."""
    from policy_engine.builtins import certificates

    return certificates.parse_rsa_private_key(pem)


def parse_private_keys(keys: object) -> tuple[dict[str, str], ...]:
    """Every private key (RSA, EC, Ed25519) in PEM text, each as a JWK object."""
    from policy_engine.builtins import certificates

    return certificates.parse_private_keys(keys)


_CERT = "object[string, any]"

BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "crypto.x509.parse_certificates",
        parse_certificates,
        f"(certs: string) -> array[{_CERT}]",
        f'crypto.x509.parse_certificates("{b64(LEAF_PEM)}")',
    ),
    builtin(
        "crypto.x509.parse_and_verify_certificates",
        parse_and_verify_certificates,
        f"(certs: string) -> array<boolean, array[{_CERT}]>",
        f'crypto.x509.parse_and_verify_certificates("{b64(ROOT_PEM + LEAF_PEM)}")',
        context=True,
    ),
    builtin(
        "crypto.x509.parse_certificate_request",
        parse_certificate_request,
        f"(csr: string) -> {_CERT}",
        f'crypto.x509.parse_certificate_request("{b64(CSR_PEM)}")',
    ),
    builtin(
        "crypto.x509.parse_rsa_private_key",
        parse_rsa_private_key,
        f"(pem: string) -> {_CERT}",
        f'crypto.x509.parse_rsa_private_key("{b64(RSA_KEY_PEM)}")',
    ),
    builtin(
        "crypto.parse_private_keys",
        parse_private_keys,
        f"(keys: string) -> array[{_CERT}]",
        f'crypto.parse_private_keys("{b64(ED25519_KEY_PEM)}")',
    ),
)
