"""The client's address: the socket's peer, unless that peer is a trusted proxy.

`X-Forwarded-For` and `Forwarded` are plain request headers: anyone can send them.
They say something only when the proxy that appended to them is one the operator
listed in `trusted_proxies`. Then the hops are read from the right (the nearest
proxy's entry first), trusted proxies are skipped, and the first address that is
not a trusted proxy is the client. With no `trusted_proxies` (the default) the
headers are ignored, so the admin-token throttle and the decision log always see
the real peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from litestar.connection import ASGIConnection

__all__ = ["TrustedProxies", "client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`10.0.0.0/8`, `192.0.2.7`, `::1` ... as networks; ValueError names a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"field `trusted_proxies`: `{entry}` is not an IP address or CIDR network "
                "(e.g. `10.0.0.0/8` or `192.0.2.7`)"
            ) from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address from a header entry: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]:80`,
    `"[2001:db8::1]"` (Forwarded quotes it); None for `unknown`, `_hidden` or junk."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    """The `for=` parameter of each element of a `Forwarded` header (RFC 7239)."""
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, parameter = pair.strip().partition("=")
            if name.lower() == "for":
                hops.append(parameter)
    return hops


def _joined(headers: Mapping[str, str], name: str) -> str:
    """Every line of header `name`, in order, as one comma-separated list (a client's own
    line comes before the one its proxy added)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return ",".join(getall(name, []))
    return headers.get(name) or ""


class TrustedProxies:
    """Which peers' forwarding headers count (one instance per app)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks = parse_networks(entries)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def _trusted(self, address: Address) -> bool:
        return any(address in network for network in self._networks)

    def client(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address for a request that came from `peer` with `headers`."""
        if not self._networks:
            return peer
        nearest = _address(peer)
        if nearest is None or not self._trusted(nearest):
            return peer
        forwarded = _joined(headers, "forwarded")
        hops = (
            _forwarded_for(forwarded)
            if forwarded
            else _joined(headers, "x-forwarded-for").split(",")
        )
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # a hop that names no address: the last proxy known is the client
            nearest = address
            if not self._trusted(address):
                break
        return str(nearest)


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address for a Litestar request, by the app's `trusted_proxies`
    (the peer itself in an app that has none, e.g. the dashboard mounted elsewhere)."""
    peer = connection.client.host if connection.client else ""
    proxies = getattr(connection.app.state, "trusted_proxies", None)
    if isinstance(proxies, TrustedProxies):
        return proxies.client(peer, connection.headers)
    return peer
