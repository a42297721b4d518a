"""Network built-ins: net.cidr_contains."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from policy_engine.builtins.base import BUILTIN_ERROR, Builtin, BuiltinError, builtin, want_string

__all__ = ["BUILTINS"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=512)
def _network(text: str) -> _Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BuiltinError(
            BUILTIN_ERROR, f"net.cidr_contains: invalid CIDR address: {text}"
        ) from None


def _address_as_network(text: str) -> _Network:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise BuiltinError(
            BUILTIN_ERROR, f"net.cidr_contains: invalid IP address: {text}"
        ) from None
    return ipaddress.ip_network(address)


def cidr_contains(cidr: object, cidr_or_ip: object) -> bool:
    """True when the second operand (an address or a CIDR) lies inside the first CIDR."""
    outer = _network(want_string("net.cidr_contains", 1, cidr))
    inner_text = want_string("net.cidr_contains", 2, cidr_or_ip)
    inner = _network(inner_text) if "/" in inner_text else _address_as_network(inner_text)
    if outer.version != inner.version:
        return False
    return inner.subnet_of(outer)  # type: ignore[arg-type]


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "net.cidr_contains",
        cidr_contains,
        "(cidr: string, cidr_or_ip: string) -> boolean",
        'net.cidr_contains("10.0.0.0/8", "10.1.2.3")',
    ),
)
