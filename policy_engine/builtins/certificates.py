"""The work of the certificate built-ins (see policy_engine.builtins.x509), with `cryptography`.

Imported on first use only: `cryptography` takes a fifth of a second to import.

Input is PEM text, or base64 of PEM or DER, as OPA accepts. Parsing and
signature checks are the `cryptography` library's. A certificate is described
with the fields of Go's x509.Certificate that policies use (names, validity,
serial, key usages, SANs, CA flag); the raw DER and key material are left out.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from policy_engine.builtins.base import BUILTIN_ERROR, BuiltinError, want_string
from policy_engine.builtins.keys import jwk_of_private_key
from policy_engine.runtime import Ctx

__all__ = [
    "parse_and_verify_certificates",
    "parse_certificate_request",
    "parse_certificates",
    "parse_private_keys",
    "parse_rsa_private_key",
]

_NAME_FIELDS = (
    ("CommonName", NameOID.COMMON_NAME, False),
    ("SerialNumber", NameOID.SERIAL_NUMBER, False),
    ("Country", NameOID.COUNTRY_NAME, True),
    ("Organization", NameOID.ORGANIZATION_NAME, True),
    ("OrganizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME, True),
    ("Locality", NameOID.LOCALITY_NAME, True),
    ("Province", NameOID.STATE_OR_PROVINCE_NAME, True),
    ("StreetAddress", NameOID.STREET_ADDRESS, True),
    ("PostalCode", NameOID.POSTAL_CODE, True),
)
_EXT_KEY_USAGES = {
    ExtendedKeyUsageOID.SERVER_AUTH: 1,
    ExtendedKeyUsageOID.CLIENT_AUTH: 2,
    ExtendedKeyUsageOID.CODE_SIGNING: 3,
    ExtendedKeyUsageOID.EMAIL_PROTECTION: 4,
    ExtendedKeyUsageOID.TIME_STAMPING: 8,
    ExtendedKeyUsageOID.OCSP_SIGNING: 9,
}
_KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _pem_or_der_blocks(name: str, text: str) -> list[bytes]:
    """PEM blocks (as PEM bytes) or one DER blob; base64 of either is accepted too."""
    raw = text.encode()
    if b"-----BEGIN" not in raw:
        try:
            raw = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise BuiltinError(BUILTIN_ERROR, f"{name}: input is neither PEM nor base64") from None
    if b"-----BEGIN" in raw:
        blocks = []
        for chunk in raw.split(b"-----END")[:-1]:
            begin = chunk.find(b"-----BEGIN")
            label_end = chunk.find(b"-----", begin + 10)
            label = chunk[begin + 10 : label_end].strip()
            blocks.append(chunk[begin:] + b"-----END " + label + b"-----\n")
        return blocks
    return [raw]


def _name(name: x509.Name) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for field, oid, many in _NAME_FIELDS:
        values = [str(attribute.value) for attribute in name.get_attributes_for_oid(oid)]
        if many:
            if values:
                described[field] = tuple(values)
        elif values:
            described[field] = values[0]
    described["Names"] = tuple(
        {"Type": attribute.oid.dotted_string, "Value": str(attribute.value)} for attribute in name
    )
    return described


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _extension(cert: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _describe(cert: x509.Certificate) -> dict[str, Any]:
    san = _extension(cert, x509.SubjectAlternativeName)
    basic = _extension(cert, x509.BasicConstraints)
    usage = _extension(cert, x509.KeyUsage)
    extended = _extension(cert, x509.ExtendedKeyUsage)
    key_usage = 0
    if usage is not None:
        for bit, field in enumerate(_KEY_USAGE_BITS):
            if getattr(usage, field):
                key_usage |= 1 << bit
    return {
        "Version": cert.version.value + 1,
        "SerialNumber": cert.serial_number,
        "Subject": _name(cert.subject),
        "Issuer": _name(cert.issuer),
        "NotBefore": _time(cert.not_valid_before_utc),
        "NotAfter": _time(cert.not_valid_after_utc),
        "KeyUsage": key_usage,
        "ExtKeyUsage": tuple(_EXT_KEY_USAGES.get(oid, 0) for oid in extended or ()),
        "IsCA": bool(basic is not None and basic.ca),
        "BasicConstraintsValid": basic is not None,
        "DNSNames": tuple(san.get_values_for_type(x509.DNSName)) if san else (),
        "EmailAddresses": tuple(san.get_values_for_type(x509.RFC822Name)) if san else (),
        "IPAddresses": tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        if san
        else (),
        "URIStrings": tuple(san.get_values_for_type(x509.UniformResourceIdentifier)) if san else (),
        "SignatureAlgorithm": cert.signature_algorithm_oid._name,
    }


def _certificates(name: str, text: str) -> list[x509.Certificate]:
    certificates = []
    try:
        for block in _pem_or_der_blocks(name, text):
            if block.startswith(b"-----BEGIN"):
                certificates.append(x509.load_pem_x509_certificate(block))
            else:
                certificates.append(x509.load_der_x509_certificate(block))
    except ValueError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: {problem}") from None
    return certificates


def parse_certificates(certs: object) -> tuple[dict[str, Any], ...]:
    """The certificates in PEM text (or base64 of PEM or DER), each as an object."""
    name = "crypto.x509.parse_certificates"
    return tuple(_describe(cert) for cert in _certificates(name, want_string(name, 1, certs)))


def parse_and_verify_certificates(
    ctx: Ctx, certs: object
) -> tuple[bool, tuple[dict[str, Any], ...]]:
    """[true, certificates] when they form a chain (root first, leaf last) valid at the
    evaluation's time; [false, []] otherwise."""
    from policy_engine.builtins.time import now_ns  # the clock the evaluation fixed

    name = "crypto.x509.parse_and_verify_certificates"
    try:
        chain = _certificates(name, want_string(name, 1, certs))
    except BuiltinError:
        return (False, ())
    if len(chain) < 2:
        return (False, ())
    now = datetime.fromtimestamp(now_ns(ctx) / 1_000_000_000, UTC)
    for issuer, subject in pairwise(chain):
        try:
            subject.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return (False, ())
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return (False, ())
    return (True, tuple(_describe(cert) for cert in chain))


def parse_certificate_request(csr: object) -> dict[str, Any]:
    """A certificate signing request (PEM, or base64 of PEM or DER) as an object."""
    name = "crypto.x509.parse_certificate_request"
    (block, *_) = _pem_or_der_blocks(name, want_string(name, 1, csr)) or [b""]
    try:
        request = (
            x509.load_pem_x509_csr(block)
            if block.startswith(b"-----BEGIN")
            else x509.load_der_x509_csr(block)
        )
    except ValueError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: {problem}") from None
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names: tuple[str, ...] = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns_names = ()
    return {
        "Version": 0,
        "Subject": _name(request.subject),
        "DNSNames": dns_names,
        "SignatureAlgorithm": request.signature_algorithm_oid._name,
    }


def _private_keys(name: str, text: str) -> list[dict[str, str]]:
    keys = []
    for block in _pem_or_der_blocks(name, text):
        try:
            if block.startswith(b"-----BEGIN"):
                key = serialization.load_pem_private_key(block, password=None)
            else:
                key = serialization.load_der_private_key(block, password=None)
            keys.append(jwk_of_private_key(key))
        except (ValueError, TypeError) as problem:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: {problem}") from None
    return keys


def parse_rsa_private_key(pem: object) -> dict[str, str]:
    """An RSA private key (PEM, or base64 of PEM) as a JWK object."""
    name = "crypto.x509.parse_rsa_private_key"
    keys = _private_keys(name, want_string(name, 1, pem))
    if len(keys) != 1 or keys[0]["kty"] != "RSA":
        raise BuiltinError(BUILTIN_ERROR, f"{name}: expected one RSA private key")
    return keys[0]


def parse_private_keys(keys: object) -> tuple[dict[str, str], ...]:
    """Every private key (RSA, EC, Ed25519) in PEM text, each as a JWK object."""
    name = "crypto.parse_private_keys"
    text = want_string(name, 1, keys)
    if text.strip() == "":
        return ()
    return tuple(_private_keys(name, text))
