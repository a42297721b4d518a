"""The API routes' request path as plain ASGI, below Litestar's handler machinery.

Litestar still routes the request (and answers 404/405), documents the operations in
OpenAPI, and runs the app's middleware; but for the API operations the work per
request is done here, straight on the ASGI scope: read the body, hand it to
`Gateway.handle`, send the reply as Litestar's own `ASGIResponse` /
`ASGIStreamingResponse` would (same headers, same messages; a stream stops once its
client has left, as the request's work does). Skipped:
the handler's signature model, dependency resolution and `Response` conversion, which
together were about a fifth of the gateway's CPU time per request
(docs/benchmarks.md, "Tuning").

Attached as route middleware (`api_middleware`), so the same path serves the test
client, `gateway serve` and every other way the app is mounted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp, Receive, Scope, Send

from proxy.cancel_scopes import Departure
from proxy.documents import Operation
from proxy.forwarded import TrustedProxies
from proxy.gateway import Gateway, Reply
from proxy.rate_headers import HEADER_NAMES, header_pairs
from proxy.response_head import ResponseHeadCycle

__all__ = ["OPERATION_OPT", "ApiServing", "ClientWatches", "api_fast_path", "api_middleware"]

logger = logging.getLogger("gateway")
T = TypeVar("T")

# The key, in a route handler's `opt`, naming the API operation it serves.
OPERATION_OPT = "gateway_operation"
# How long a request runs before its client's disconnect is watched for.
_WATCH_AFTER_S = 0.05
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Statuses whose answers carry no body: left to Litestar's `ASGIResponse`.
_NO_BODY = frozenset({204, 304})
# The header lines of a rate-limited key's every reply, encoded once (lower-casing and
# encoding six names per reply showed in the controls' cost, issue 13).
_HEADER_NAMES: Final[Mapping[str, bytes]] = MappingProxyType(
    {name: name.lower().encode("latin-1") for name in HEADER_NAMES}
)


class ApiServing:
    """What every API request reads from the app, as plain attributes: the app's
    `State` answers an attribute only from `__getattr__`, after the ordinary lookup has
    failed and built its `AttributeError`, ~4k instructions a read, four a request
    (issue 15). Kept in the app's state as `api_serving`; each lifespan sets `watches`
    (their timer runs on its loop), then `gateway`."""

    __slots__ = ("gateway", "proxies", "watches")

    def __init__(self, proxies: TrustedProxies) -> None:
        self.proxies = proxies
        self.watches = ClientWatches()
        self.gateway: Gateway | None = None  # None until the lifespan built it


def api_middleware(app: ASGIApp) -> ASGIApp:
    """Route middleware that answers the API operation itself (never calls the wrapped `app`)."""
    return _serve


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    operation: Operation = scope["route_handler"].opt[OPERATION_OPT]
    serving: ApiServing = scope["app"].state.api_serving
    gateway = serving.gateway
    if gateway is None:  # as the app's `State` failed before: a 500 from Litestar
        raise RuntimeError("an API request before the app's lifespan built its gateway")
    await _serve_operation(operation, gateway, serving, scope, receive, send)


def api_fast_path(routed: ASGIApp, handlers: Iterable[Any], serving: ApiServing) -> ASGIApp:
    """The app's ASGI handler with the API operations answered before Litestar's router.

    A request whose method and exact path are an API operation's goes straight to the
    same code `api_middleware` runs; everything else (other paths, a trailing slash,
    a wrong method and its 405, the app before its lifespan ran) goes to `routed`, as
    before. Skipped for those requests: the exception middleware and the router's path
    normalisation and lookup, a few percent of the gateway's CPU per request."""
    table: dict[tuple[str, str], Operation] = {}
    for handler in handlers:
        operation = handler.opt.get(OPERATION_OPT)
        if operation is None:
            continue
        for path in handler.paths:
            for method in handler.http_methods:
                table[(method, path)] = operation

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            operation = table.get((scope["method"], scope["path"]))
            gateway = serving.gateway
            if operation is not None and gateway is not None:
                await _serve_operation(operation, gateway, serving, scope, receive, send)
                return
        await routed(scope, receive, send)

    return handle


async def _serve_operation(
    operation: Operation,
    gateway: Gateway,
    serving: ApiServing,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    try:
        reply = await _answer(operation, scope, receive, gateway, serving.proxies, serving.watches)
    except Exception:
        # What Litestar's exception handler would answer, in the configured format.
        logger.exception("unhandled error on %s", scope.get("path", ""))
        reply = gateway.error(500, "Internal error: see the gateway log", operation)
    if reply is None:
        # Never sent: nobody listens.
        reply = gateway.error(400, "Client closed the request", operation)
    if reply.stream is not None:
        await _send_stream(reply, reply.stream, receive, send, serving.watches)
    elif reply.status >= 200 and reply.status not in _NO_BODY:
        await _send_whole(reply, send)
    else:
        await _response(reply)(scope, receive, send)


async def _send_stream(
    reply: Reply, stream: AsyncIterator[bytes], receive: Receive, send: Send, watches: ClientWatches
) -> None:
    """A stream sent as Litestar's `ASGIStreamingResponse` sends it (the same head and
    messages, the reply's cleanup after them, nothing more once the client has left),
    but from the request's own task: the client's departure is watched for as
    `_unless_client_leaves` watches for it, not by an anyio task group running the
    stream in a task of its own (issue 15)."""
    response = _response(reply)
    await response.start_response(send)
    await _unless_client_leaves(receive, _send_chunks(stream, send), watches)
    await response.after_response()


async def _send_chunks(stream: AsyncIterator[bytes], send: Send) -> None:
    async for chunk in stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_whole(reply: Reply, send: Send) -> None:
    """A whole reply, sent as Litestar's `ASGIResponse` would send it (same header
    lines in the same order: the reply's own, lower-cased, its rate lines, then
    content-type and content-length unless set), without building one per request."""
    cycle = getattr(send, "__self__", None)
    if not reply.headers and type(cycle) is ResponseHeadCycle:
        # The usual reply (no header lines of its own): its head from the parts the
        # server keeps (`PlainHeads`), unless the cycle declines.
        media_type = _media_type(reply.content_type)
        if cycle.send_plain(reply.status, media_type, reply.body, reply.rate_lines):
            return
    headers = [
        (_HEADER_NAMES.get(name) or name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in reply.headers
    ]
    # The rate lines hold neither of the two names looked for below.
    names = {name for name, _ in headers}
    if b"content-type" not in names:
        headers.append((b"content-type", _media_type(reply.content_type)))
    if b"content-length" not in names:
        headers.append((b"content-length", b"%d" % len(reply.body)))
    if type(cycle) is ResponseHeadCycle and cycle.send_whole(
        reply.status, headers, reply.body, reply.rate_lines, len(reply.headers)
    ):
        # `gateway serve`'s own cycle took both messages at once (the same bytes), the
        # rate lines as they are.
        return
    if reply.rate_lines:
        at = len(reply.headers)
        headers[at:at] = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in header_pairs(reply.rate_lines)
        ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


def _media_type(content_type: str) -> bytes:
    """The `content-type` line's value Litestar's `ASGIResponse` writes for `content_type`."""
    if content_type.startswith("text/"):
        content_type = f"{content_type}; charset=utf-8"
    return content_type.encode("latin-1")


async def _answer(
    operation: Operation,
    scope: Scope,
    receive: Receive,
    gateway: Gateway,
    proxies: TrustedProxies,
    watches: ClientWatches,
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
    headers = _request_headers(scope, proxies)
    client_ip = proxies.client(client[0] if client else "", headers)
    work = gateway.handle(operation, headers, client_ip, body)
    return await _unless_client_leaves(receive, work, watches)


def _request_headers(scope: Scope, proxies: TrustedProxies) -> Mapping[str, str]:
    """The request headers by (lower-case) name, the first line of each. With trusted
    proxies, Litestar's multi-valued `Headers`: their forwarding headers are read line
    by line (`proxy.forwarded`)."""
    if proxies:
        return Headers.from_scope(scope)
    return FirstLines(scope["headers"])


class FirstLines(Mapping[str, str]):
    """The request's header lines by lower-case name, the first line of each, decoded as
    latin-1: what a dict built from every line holds, but read from the lines when a
    name is asked for. A request asks for one or two names (its credentials), and
    decoding and lower-casing every name and value of a request was ~20k instructions
    (issue 15); the dict is built only if the mapping is iterated or measured."""

    __slots__ = ("_built", "_lines")

    def __init__(self, lines: Iterable[tuple[bytes, bytes]]) -> None:
        self._lines = lines
        self._built: dict[str, str] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        if not key.isascii():  # lower-casing beyond ASCII: as the dict would
            return self._dict().get(key, default)
        wanted = key.encode("ascii")
        for name, value in self._lines:
            # ASGI servers send names in lower case (uvicorn does): one comparison.
            if name == wanted or name.lower() == wanted:
                return value.decode("latin-1")
        return default

    def __getitem__(self, key: str) -> str:
        value: str | None = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def _dict(self) -> dict[str, str]:
        built = self._built
        if built is None:
            built = self._built = {}
            for name, value in self._lines:
                built.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        return built

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


def _response(reply: Reply) -> ASGIResponse:
    headers = reply.headers + header_pairs(reply.rate_lines) if reply.rate_lines else reply.headers
    if reply.stream is not None:
        return ASGIStreamingResponse(
            iterator=reply.stream,
            status_code=reply.status,
            media_type=reply.content_type,
            headers={**_STREAM_HEADERS, **dict(headers)} if headers else _STREAM_HEADERS,
            background=BackgroundTask(reply.cleanup) if reply.cleanup else None,
        )
    return ASGIResponse(
        body=reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers=headers or None,
    )


async def _read_limited(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                return None
            break
    cycle = getattr(receive, "__self__", None)
    if type(cycle) is ResponseHeadCycle:
        # `gateway serve`'s own cycle hands a body that has all arrived over at once.
        whole = cycle.whole_body()
        if whole is not None:
            return whole if len(whole) <= limit else None
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


class ClientWatches:
    """When the requests in flight on one event loop start watching for their client
    leaving (`_unless_client_leaves`): each `_WATCH_AFTER_S` after it began, on one
    timer for them all. A timer per request (made, then cancelled as the answer almost
    always comes first) was ~6k instructions a request; here a request that ends just
    marks its entry, and the timer, when it fires, skips the ended ones and is armed
    again for the next request still running (the same moments, to the loop's timer
    resolution)."""

    __slots__ = ("_due", "_timer")

    def __init__(self) -> None:
        # [moment, start or None once its request ended], in order of moment.
        self._due: collections.deque[list[Any]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, loop: asyncio.AbstractEventLoop, start: Callable[[], object]) -> list[Any]:
        """Call `start` `_WATCH_AFTER_S` from now unless the returned entry's second item
        is set to None first."""
        entry: list[Any] = [loop.time() + _WATCH_AFTER_S, start]
        self._due.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry[0], self._run, loop)
        return entry

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        due = self._due
        # A microsecond early is due: a moment and the clock's reading at its timer
        # differ by float rounding (uvloop's clock and timers count whole milliseconds).
        now = loop.time() + 1e-6
        while due:
            moment, start = due[0]
            if start is not None and moment > now:
                self._timer = loop.call_at(moment, self._run, loop)
                return
            due.popleft()
            if start is not None:
                start()


async def _unless_client_leaves(
    receive: Receive, work: Coroutine[Any, Any, T], watches: ClientWatches
) -> T | None:
    """Run `work`, cancelling it (and so the upstream call) if the client disconnects
    first; None then.

    The watcher only starts once the work has taken `_WATCH_AFTER_S`: most answers are
    sent before that, and a timer costs far less than a task per request (an anyio task
    group per request was about a tenth of the gateway's CPU time in the benchmark). A
    client that leaves is still noticed within that delay. Its departure cancels the
    work as a cancel scope around it would, honouring the shields that settle or release
    usage (`proxy.cancel_scopes.Departure`), without entering one per request."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:  # pragma: no cover - ASGI servers run each request in a task
        return await work
    departure = Departure(loop, task)
    watchers: list[asyncio.Task[None]] = []

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        departure.leave()

    entry = watches.add(loop, lambda: watchers.append(loop.create_task(watch())))
    try:
        return await departure.run(work)
    finally:
        entry[1] = None
        for watcher in watchers:
            watcher.cancel()
