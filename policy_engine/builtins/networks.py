"""More network built-ins: net.cidr_intersects, cidr_is_valid, cidr_expand, cidr_merge,
cidr_contains_matches. (net.lookup_ip_addr needs DNS and stays out.)
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_string,
)
from policy_engine.values import sort_key

__all__ = ["BUILTINS"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Expanding more addresses than this would take gigabytes.
_MAX_EXPANSION: Final = 1 << 20


def _cidr(name: str, text: str) -> _Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: invalid CIDR address: {text}") from None


def cidr_intersects(a: object, b: object) -> bool:
    """Whether two CIDRs share an address."""
    first = _cidr("net.cidr_intersects", want_string("net.cidr_intersects", 1, a))
    second = _cidr("net.cidr_intersects", want_string("net.cidr_intersects", 2, b))
    return first.version == second.version and first.overlaps(second)


def cidr_is_valid(value: object) -> bool:
    """Whether the value is a string holding a CIDR (an address with a prefix length)."""
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def cidr_expand(value: object) -> frozenset[str]:
    """Every address in the CIDR."""
    network = _cidr("net.cidr_expand", want_string("net.cidr_expand", 1, value))
    if network.num_addresses > _MAX_EXPANSION:
        raise BuiltinError(
            BUILTIN_ERROR,
            f"net.cidr_expand: {network} holds more than {_MAX_EXPANSION} addresses",
        )
    return frozenset(str(address) for address in network)


def _merge_input(text: str) -> _Network:
    if "/" in text:
        return _cidr("net.cidr_merge", text)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise BuiltinError(BUILTIN_ERROR, f"net.cidr_merge: invalid IP address: {text}") from None
    if address.version == 6:
        raise BuiltinError(BUILTIN_ERROR, "net.cidr_merge: IPv6 invalid: needs prefix length")
    # Go's net.IP.DefaultMask: an address alone stands for its classful network.
    first = int(address) >> 24
    prefix = 8 if first < 128 else 16 if first < 192 else 24
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def cidr_merge(values: object) -> frozenset[str]:
    """The smallest set of CIDRs covering the given addresses and CIDRs."""
    if not isinstance(values, (tuple, list, frozenset)):
        raise operand_error("net.cidr_merge", 1, "one of {array, set}", values)
    networks: dict[int, list[Any]] = {4: [], 6: []}
    for item in values:
        if not isinstance(item, str):
            raise operand_error("net.cidr_merge", 1, "array of strings", values)
        network = _merge_input(item)
        networks[network.version].append(network)
    merged: list[str] = []
    for version in (4, 6):
        merged.extend(str(n) for n in ipaddress.collapse_addresses(networks[version]))
    return frozenset(merged)


def _cidr_items(position: int, value: object) -> list[tuple[Any, str]]:
    """(key, cidr or address) pairs: a string is its own key; arrays use indexes, objects keys."""
    name = "net.cidr_contains_matches"
    if isinstance(value, str):
        return [(value, value)]
    if isinstance(value, (tuple, list)):
        pairs = list(enumerate(value))
    elif isinstance(value, frozenset):
        pairs = [(member, member) for member in sorted(value, key=sort_key)]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise operand_error(name, position, "one of {string, array, set, object}", value)
    found: list[tuple[Any, str]] = []
    for key, item in pairs:
        if isinstance(item, (tuple, list)) and item and isinstance(item[0], str):
            found.append((key, item[0]))
        elif isinstance(item, str):
            found.append((key, item))
        else:
            raise BuiltinError(
                BUILTIN_ERROR,
                f"{name}: operand {position}: element must be string or non-empty array",
            )
    return found


def _contains(outer: _Network, inner_text: str) -> bool:
    try:
        inner = ipaddress.ip_network(inner_text, strict=False)
    except ValueError:
        raise BuiltinError(
            BUILTIN_ERROR, f"net.cidr_contains_matches: invalid CIDR address: {inner_text}"
        ) from None
    return outer.version == inner.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def cidr_contains_matches(cidrs: object, cidrs_or_ips: object) -> frozenset[Any]:
    """Pairs [cidr key, address key] where the first CIDR contains the second."""
    outers = _cidr_items(1, cidrs)
    inners = _cidr_items(2, cidrs_or_ips)
    matches = set()
    for outer_key, outer_text in outers:
        outer = _cidr("net.cidr_contains_matches", outer_text)
        for inner_key, inner_text in inners:
            if _contains(outer, inner_text):
                matches.add((outer_key, inner_key))
    return frozenset(matches)


_CIDRS = (
    "string | array[string | array[any]] | set[string | array[any]]"
    " | object[string, string | array[any]]"
)

BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "net.cidr_intersects",
        cidr_intersects,
        "(cidr1: string, cidr2: string) -> boolean",
        'net.cidr_intersects("10.0.0.0/8", "10.1.0.0/16")',
    ),
    builtin(
        "net.cidr_is_valid",
        cidr_is_valid,
        "(cidr: string) -> boolean",
        'net.cidr_is_valid("10.0.0.0/8")',
    ),
    builtin(
        "net.cidr_expand",
        cidr_expand,
        "(cidr: string) -> set[string]",
        'net.cidr_expand("192.168.0.0/31")',
    ),
    builtin(
        "net.cidr_merge",
        cidr_merge,
        "(addrs: array[string] | set[string]) -> set[string]",
        'net.cidr_merge(["192.0.128.0/24", "192.0.129.0/24"])',
    ),
    builtin(
        "net.cidr_contains_matches",
        cidr_contains_matches,
        f"(cidrs: {_CIDRS}, cidrs_or_ips: {_CIDRS}) -> set[array<any, any>]",
        'net.cidr_contains_matches(["10.0.0.0/8"], ["10.1.2.3", "192.168.0.1"])',
    ),
)
