"""The API routes' request path as plain ASGI, below Litestar's handler machinery.

Litestar still routes the request (and answers 404/405), documents the operations in
OpenAPI, and runs the app's middleware; but for the API operations the work per
request is done here, straight on the ASGI scope: read the body, hand it to
`Gateway.handle`, send the reply with Litestar's own `ASGIResponse` /
`ASGIStreamingResponse` (same headers, same disconnect handling for streams). Skipped:
the handler's signature model, dependency resolution and `Response` conversion, which
together were about a fifth of the gateway's CPU time per request
(docs/benchmarks.md, "Tuning").

Attached as route middleware (`api_middleware`), so the same path serves the test
client, `gateway serve` and every other way the app is mounted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import anyio
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Headers
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp, Receive, Scope, Send

from proxy.documents import Operation
from proxy.forwarded import TrustedProxies
from proxy.gateway import Gateway, Reply

__all__ = ["OPERATION_OPT", "api_middleware"]

logger = logging.getLogger("gateway")

# The key, in a route handler's `opt`, naming the API operation it serves.
OPERATION_OPT = "gateway_operation"
# How long a request runs before its client's disconnect is watched for.
_WATCH_AFTER_S = 0.05
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def api_middleware(app: ASGIApp) -> ASGIApp:
    """Route middleware that answers the API operation itself (never calls the wrapped `app`)."""
    return _serve


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    app: Any = scope["app"]
    gateway: Gateway = app.state.gateway
    operation: Operation = scope["route_handler"].opt[OPERATION_OPT]
    try:
        reply = await _answer(operation, scope, receive, gateway)
    except Exception:
        # What Litestar's exception handler would answer, in the configured format.
        logger.exception("unhandled error on %s", scope.get("path", ""))
        reply = gateway.error(500, "Internal error: see the gateway log", operation)
    if reply is None:
        # Never sent: nobody listens.
        reply = gateway.error(400, "Client closed the request", operation)
    await _response(reply)(scope, receive, send)


async def _answer(
    operation: Operation, scope: Scope, receive: Receive, gateway: Gateway
) -> Reply | None:
    body = b""
    if operation != "models.list":
        limit = gateway.max_body_bytes
        read = await _read_limited(scope, receive, limit)
        if read is None:
            message = f"Request body too large: the limit is {limit} bytes"
            return gateway.error(413, message, operation)
        body = read
    client = scope.get("client")
    headers = Headers.from_scope(scope)
    proxies: TrustedProxies = scope["app"].state.trusted_proxies
    client_ip = proxies.client(client[0] if client else "", headers)
    return await _unless_client_leaves(receive, gateway.handle(operation, headers, client_ip, body))


def _response(reply: Reply) -> ASGIResponse:
    if reply.stream is not None:
        return ASGIStreamingResponse(
            iterator=reply.stream,
            status_code=reply.status,
            media_type=reply.content_type,
            headers={**_STREAM_HEADERS, **dict(reply.headers)}
            if reply.headers
            else _STREAM_HEADERS,
            background=BackgroundTask(reply.cleanup) if reply.cleanup else None,
        )
    return ASGIResponse(
        body=reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers=reply.headers or None,
    )


async def _read_limited(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                return None
            break
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client left; the watcher below sees it too
        chunk = message["body"]
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _unless_client_leaves(receive: Receive, work: Awaitable[Reply]) -> Reply | None:
    """Run `work`, cancelling it (and so the upstream call) if the client disconnects
    first; None then. Streams are watched by `ASGIStreamingResponse` once they start.

    The watcher only starts once the work has taken `_WATCH_AFTER_S`: most answers are
    sent before that, and a timer costs far less than a task per request (an anyio task
    group per request was about a tenth of the gateway's CPU time in the benchmark). A
    client that leaves is still noticed within that delay."""
    loop = asyncio.get_running_loop()
    watchers: list[asyncio.Task[None]] = []
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            scope.cancel()  # honours the shielded scopes that settle or release usage

        timer = loop.call_later(_WATCH_AFTER_S, lambda: watchers.append(loop.create_task(watch())))
        try:
            return await work
        finally:
            timer.cancel()
            for watcher in watchers:
                watcher.cancel()
    return None  # cancelled because the client left
