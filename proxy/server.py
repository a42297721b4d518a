"""Running the app under uvicorn: bind first, then announce, then serve.

The listening socket is bound before anything else starts, so a port in use is one
clear error and exit status 2 (not a "listening" line followed by uvicorn's failure).
The uvicorn settings (connection deadlines, no proxy-header rewriting) are built here
for `gateway serve` and for the test servers alike.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Literal

import uvicorn
from litestar import Litestar

from proxy.config import ADMIN_TOKEN_ENV, GatewayConfig
from proxy.connection_deadlines import ConnectionLimits, deadline_protocol

__all__ = ["PortUnavailable", "bind", "serve", "uvicorn_config"]

logger = logging.getLogger("gateway")


class PortUnavailable(Exception):
    """The listen address cannot be bound; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (IPv4 or IPv6, as `host` resolves)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortUnavailable(
            f"cannot listen on {host}:{port}: the host does not resolve ({exc.strerror}); "
            "set `host` (or --host) to an address of this machine"
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"cannot listen on {host}:{port}: the port is already in use; stop the other "
                "server or choose another port with --port (or `port` in the config)"
            ) from None
        raise PortUnavailable(
            f"cannot listen on {host}:{port}: {exc.strerror}; check `host` and `port`"
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: Litestar,
    config: GatewayConfig,
    *,
    loop: Literal["uvloop", "asyncio"] = "uvloop",
    log_level: str | None = None,
) -> uvicorn.Config:
    """uvicorn's settings for the gateway: httptools with the connection deadlines of
    `proxy.connection_deadlines`, and client addresses left as the socket gives them
    (`proxy.forwarded` decides which proxies' headers count, never uvicorn)."""
    limits = ConnectionLimits(
        header_read_timeout=config.header_read_timeout,
        body_read_timeout=config.body_read_timeout,
        max_connections=config.max_connections,
        error_format=config.error_format,
    )
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop=loop,
        http=deadline_protocol(limits),
        timeout_keep_alive=config.keep_alive_timeout,  # type: ignore[arg-type]
        proxy_headers=False,
        forwarded_allow_ips="",
        access_log=False,  # the decision log has one line per request already
        lifespan="on",  # the store and upstream client open there: fail loudly if it cannot
        log_config=None,
        log_level=log_level or config.log_level,
    )


def announcement(config: GatewayConfig, sock: socket.socket) -> str:
    """The start-up line: where to send requests, and whether the dashboard is on."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    if config.admin_token:
        extras = f"dashboard {url}/dashboard and admin API {url}/admin on"
    else:
        extras = f"dashboard and admin API off (set {ADMIN_TOKEN_ENV} to turn them on)"
    return f"listening on {url} (API {url}/v1, policy {config.policy_dir}); {extras}"


def serve(
    app: Litestar, config: GatewayConfig, sock: socket.socket, *, announce: bool = True
) -> None:
    """Serve `app` on the already bound `sock` until interrupted (`announce`: log where;
    the workers of `gateway serve --workers N` leave that to their supervisor)."""
    if announce:
        logger.info("%s", announcement(config, sock))
    server = uvicorn.Server(uvicorn_config(app, config))
    server.run(sockets=[sock])
