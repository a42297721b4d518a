"""Deadlines and a cap on client connections, below the ASGI app.

uvicorn closes a connection that stays idle after a response (`timeout_keep_alive`)
but puts no deadline on a new connection that never sends a byte, on request headers
that trickle in one line at a time, or on a body that never finishes: each such
connection holds a socket and memory for as long as the client likes. Its
`limit_concurrency` answers 503 only once a request's headers are complete, so silent
connections are never refused either.

`deadline_protocol` returns uvicorn's httptools protocol with those gaps closed:

- the request headers must be complete within `header_read_timeout` seconds of the
  connection opening (or of the first byte of the next request on a kept-alive one):
  otherwise 408 if part of a request came, else the connection is just closed;
- the body must be complete within `body_read_timeout` seconds of the headers: 408,
  and the app sees the client disconnect;
- beyond `max_connections` open connections, a new one is answered 503 at once and
  closed, whatever it sends.

Time spent by the app answering is never limited here (an LLM call may take minutes).

It also writes each response's head and the start of its body with one `write`
(`_HeadCombiner`): uvicorn writes the head as soon as the app sends
`http.response.start`, and the body with the next message, two system calls (and two
TCP segments to the client) for every whole reply. The head now waits for the body's
first write, or at most until the event loop's next turn (a streamed reply whose first
chunk is not ready yet), so nothing is delayed past the turn that sent it.

Each response cycle is `proxy.response_head.ResponseHeadCycle`: uvicorn's, with the
head's header lines checked by two `bytes.translate` passes over all of them, not two
regex scans a line (the same bytes, the same refusals).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.errors import ErrorFormat, error_body
from proxy.response_head import PlainHeads, ResponseHeadCycle

__all__ = ["ConnectionLimits", "deadline_protocol"]

logger = logging.getLogger("gateway")

# How long a connection answered below the app (503 refusal, 408 deadline) is kept
# half-closed so the client reads the answer rather than a reset: closing with unread
# input makes the kernel send RST, and a client still sending (a slow one trickling
# headers) would lose the response that was already on its way.
_LINGER_S = 1.0
_REASONS = {408: b"Request Timeout", 503: b"Service Unavailable"}


class _Unchanged:
    """No parser callback of the current read asked for a different deadline."""


_UNCHANGED = _Unchanged()
# A deadline: seconds from now, and what runs when it passes.
_Deadline = tuple[float, Callable[[], object]]


class ConnectionLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The deadlines (seconds) and the cap, from the gateway's configuration."""

    header_read_timeout: float
    body_read_timeout: float
    max_connections: int
    error_format: ErrorFormat = "documented"


def _raw_response(status: int, message: str, error_format: ErrorFormat) -> bytes:
    """A complete HTTP/1.1 response that closes the connection (written below the app)."""
    body = error_body(status, message, error_format)
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class _HeadCombiner:
    """The transport as uvicorn's response cycles see it: a write that begins a
    response head (`HTTP/1.1 ...`, also a `100 Continue`) is held, and goes out in one
    call with the write after it if that comes before the loop's next turn, else on
    its own at that turn (`flush`). Every other write passes straight through, after
    whatever is held: the bytes and their order are uvicorn's own.

    One per connection; the protocol flushes it before anything it writes or closes
    itself, so no byte of its own can overtake a held head."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif data.startswith(b"HTTP/1.") and not self._transport.is_closing():
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        """`parts` in one call, after whatever is held (a whole reply's head and body,
        `ResponseHeadCycle.send_whole`: nothing to hold back for)."""
        held = self._held
        if held is not None:
            self._held = None
            parts = (held, *parts)
        self._transport.writelines(parts)

    def flush(self) -> None:
        """Write the held head, if any (nothing once the transport closes: the
        connection is gone, or being cut by whoever closed it)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


async def _leaving(
    run: Coroutine[Any, Any, None],
    tasks: set[asyncio.Task[None]],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """`run` (a request's `run_asgi`), then its task out of the server's `tasks`."""
    try:
        await run
    finally:
        tasks.discard(asyncio.current_task(loop))


def deadline_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol class with `limits` enforced (pass as `http=`)."""
    header_timeout = _raw_response(
        408,
        f"Request Timeout: the request headers did not arrive within "
        f"{limits.header_read_timeout:g} seconds",
        limits.error_format,
    )
    body_timeout = _raw_response(
        408,
        f"Request Timeout: the request body did not arrive within "
        f"{limits.body_read_timeout:g} seconds",
        limits.error_format,
    )
    # The repeating parts of plain replies' heads, shared by the server's connections.
    heads = PlainHeads()
    refusal = _raw_response(
        503,
        f"Service Unavailable: the gateway has {limits.max_connections} connections open, "
        "its limit (`max_connections`); retry shortly",
        limits.error_format,
    )

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        # The deadline the parser callbacks of the current read asked for.
        _wanted: _Deadline | _Unchanged | None = _UNCHANGED
        _request_begun = False
        _lingering = False
        _combiner: _HeadCombiner | None = None
        # When the connection's last response completed (loop time), None while busy.
        _idle_since: float | None = None
        _idle_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._combiner = _HeadCombiner(self.transport, self.loop)
            if len(self.connections) > limits.max_connections:
                self._refuse()
                return
            self._arm(limits.header_read_timeout, self._headers_late)

        def _refuse(self) -> None:
            logger.warning(
                "connection refused: %d open, the limit is %d (max_connections)",
                len(self.connections),
                limits.max_connections,
            )
            self._answer_and_linger(refusal)

        def _answer_and_linger(self, response: bytes) -> None:
            """Send `response`, half-close, and drop whatever still arrives until the
            client closes or `_LINGER_S` passes (a lingering close, as nginx does)."""
            self._lingering = True
            self._flush()
            self.transport.write(response)
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            self.transport.write_eof()
            self._arm(_LINGER_S, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                return  # read and dropped, so closing never resets the answer away
            self._flush()  # uvicorn may answer (400) or close below, on the real transport
            # The parser callbacks below only say which deadline they want; it is set
            # once the data is parsed. A whole request in one read (the usual case)
            # then arms no timer at all, where it armed and cancelled two.
            self._wanted = _UNCHANGED
            super().data_received(data)
            wanted = self._take_wanted()
            if isinstance(wanted, _Unchanged):
                return
            if wanted is None:
                self._disarm()
            elif not self.transport.is_closing():
                self._arm(*wanted)

        def eof_received(self) -> None:
            if self._lingering:
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            super().connection_lost(exc)

        # -- keep-alive ----------------------------------------------------------------
        # uvicorn arms a `timeout_keep_alive` timer when a response completes and cancels
        # it when the next request's bytes arrive: a timer made and cancelled per request
        # (~6k instructions). Here the connection notes when it went idle, and one timer
        # checks that: still idle long enough -> closed as uvicorn closes it; idle since
        # later -> armed again for the rest; busy -> left to the next response. The same
        # moment of closing, with one timer per keep-alive period instead of per request.

        def _unset_keepalive_if_required(self) -> None:
            # uvicorn's calls: bytes arrived, a response completed, the connection closed.
            self._idle_since = None

        def on_response_complete(self) -> None:
            # uvicorn 0.54's, with the idle moment noted instead of a timer armed.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
                return
            self._idle_since = self.loop.time()
            if self._idle_timer is None:
                self._idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_due)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # uvicorn 0.54's, but the task leaves the server's `tasks` itself, in its last
            # step (`_leaving`), instead of by a done callback: a callback is run at the
            # loop's next turn, one more turn (a zero-timeout `epoll_wait`) after every
            # request's reply, before the loop waits for the next one. The one difference:
            # a task cancelled before it ever ran (only at a forced shutdown, once the
            # graceful one timed out) stays in `tasks`, which nothing reads after that.
            if self.config.reset_contextvars:
                super()._start_asgi_task(cycle, app)
                return
            loop = self.loop
            task = loop.create_task(_leaving(cycle.run_asgi(app), self.tasks, loop))
            self.tasks.add(task)

        def _idle_due(self) -> None:
            self._idle_timer = None
            since = self._idle_since
            if since is None or self.transport.is_closing():
                return  # busy (its response arms the timer again) or gone
            left = since + self.timeout_keep_alive - self.loop.time()
            if left > 0:
                self._idle_timer = self.loop.call_later(left, self._idle_due)
            else:
                self.timeout_keep_alive_handler()

        def shutdown(self) -> None:
            self._flush()
            super().shutdown()

        def _flush(self) -> None:
            if self._combiner is not None:
                self._combiner.flush()

        # -- parser callbacks ----------------------------------------------------------

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._request_begun = True
            wanted = self._wanted
            armed = self._deadline is not None if isinstance(wanted, _Unchanged) else wanted
            if not armed:  # the next request on a kept-alive connection
                self._wanted = (limits.header_read_timeout, self._headers_late)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if self.cycle is not None:
                # Its response head's lines are checked in two searches, not two a line
                # (proxy/response_head.py); the same bytes go out.
                self.cycle.__class__ = ResponseHeadCycle
                self.cycle.heads = heads  # type: ignore[attr-defined]
                if self._combiner is not None:
                    # The cycle's head and first body bytes go out in one write.
                    self.cycle.transport = self._combiner  # type: ignore[assignment]
            self._wanted = (limits.body_read_timeout, self._body_late)

        def on_message_complete(self) -> None:
            self._wanted = None
            self._request_begun = False
            super().on_message_complete()

        # -- deadlines -----------------------------------------------------------------

        def _take_wanted(self) -> _Deadline | _Unchanged | None:
            wanted, self._wanted = self._wanted, _UNCHANGED
            return wanted

        def _arm(self, seconds: float, callback: Any) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, callback)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_late(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self._request_begun:
                self._answer_and_linger(header_timeout)
            else:
                self.transport.close()

        def _body_late(self) -> None:
            self._deadline = None
            cycle = self.cycle
            if self.transport.is_closing() or cycle is None:
                return
            # The app sees the client gone and nothing it sends is written after this.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self._flush()
                self.transport.close()
            else:
                self._answer_and_linger(body_timeout)

    return DeadlineProtocol
