"""An ASGI entry point for running the gateway under any ASGI server.

`gateway serve` is the usual way; this factory reads the same configuration (from
`$GATEWAY_CONFIG` and `GATEWAY_*` variables) for servers that import an app, e.g.
`uvicorn --factory proxy.asgi:create_from_env` or
`granian --interface asgi --factory proxy.asgi:create_from_env`. The connection
deadlines of `gateway serve` (`proxy.connection_deadlines`) are then the server's own
settings, and its proxy-header handling must be off (`uvicorn --no-proxy-headers`) so
that only `trusted_proxies` decides the client address.
"""

from __future__ import annotations

from litestar import Litestar

from proxy.app import create_app
from proxy.config import load_config

__all__ = ["create_from_env"]


def create_from_env() -> Litestar:
    """The app for the configuration in the environment (raises ConfigError if bad)."""
    return create_app(load_config(None))
