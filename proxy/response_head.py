"""uvicorn's response cycle with the head's header lines checked without a regex scan.

uvicorn's httptools cycle (`RequestResponseCycle.send`) checks every header line of a
response head with two regular-expression searches (its name, then its value) before
writing it, and those searches test one byte at a time against a character class: ~45
instructions a byte, ~11k for a reply's head with a rate-limited key's six
`x-ratelimit-*` lines (issue 13). Both patterns are single-character classes, so a line
is refused exactly when its name (value) holds a byte of the class: `ResponseHeadCycle`
translates the joined names (values) by a table that changes exactly those bytes (a
table lookup a byte, no table built per call) and refuses when the text changed. The
tables are built from uvicorn's own patterns; the bytes written and the cycle's state
are uvicorn's. Names already in lower case (the gateway's own, uvicorn's) are not
lower-cased again line by line, and one set lookup a line finds the three names whose
line changes the cycle's state.

Anything but the plain case (a head uvicorn would refuse, names or values that are not
bytes, flow control paused, a cycle already answered or disconnected, access logging
on) goes to uvicorn's own `send`, so refusals raise uvicorn's own errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

__all__ = ["PlainHeads", "ResponseHeadCycle"]


def _marking(pattern: re.Pattern[bytes]) -> bytes:
    """A `bytes.translate` table that keeps every byte `pattern` (a single-character
    class) does not match and changes every byte it matches."""
    return bytes(
        byte if pattern.fullmatch(bytes((byte,))) is None else byte ^ 1 for byte in range(256)
    )


# INVARIANT: HEADER_RE and HEADER_VALUE_RE match exactly one byte (a character class;
# tests/proxy/test_proxy_response_head.py checks every byte and every pair), so text
# holds a match iff translating it by these tables changes it.
_NAME_MARKS: Final = _marking(HEADER_RE)
_VALUE_MARKS: Final = _marking(HEADER_VALUE_RE)
# The (lower-case) names whose line changes the cycle's state.
_STATEFUL: Final = frozenset((b"content-length", b"transfer-encoding", b"connection"))
# The (lower-case) names of the lines that frame a body.
_FRAMING: Final = frozenset((b"content-length", b"transfer-encoding"))
# Content types whose line `PlainHeads` keeps at most (an upstream's replies name theirs).
_MOST_TYPES: Final = 64


class PlainHeads:
    """The parts of a plain whole reply's head that repeat (`ResponseHeadCycle.send_plain`),
    made once and checked once: the status line with the server's default lines
    (uvicorn's `date` and `server`), kept while the server's default lines are the same
    list (uvicorn makes a new list when its `date` changes, once a second), and the
    `content-type` line of each content type. One per server (`proxy.connection_deadlines`
    gives it to every cycle). Making and checking a plain reply's head line by line was
    ~30k instructions a reply (issue 15).

    None for a part `ResponseHeadCycle._head` would not write as made here: a line it
    refuses, default lines that frame a body or close the connection."""

    __slots__ = ("_defaults", "_starts", "_types")

    def __init__(self) -> None:
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._starts: dict[int, bytes | None] = {}
        self._types: dict[bytes, bytes | None] = {}

    def start(self, status: int, defaults: list[tuple[bytes, bytes]]) -> bytes | None:
        """The status line and the lines of `defaults`, as `_head` writes them."""
        # INVARIANT: uvicorn replaces the default lines' list, never changes it in place
        # (uvicorn.server.Server.on_tick): the same list holds the same lines.
        if defaults is not self._defaults:
            self._defaults = defaults
            self._starts = {}
        starts = self._starts
        if status in starts:
            return starts[status]
        start = None
        if status in STATUS_LINE and _checked(defaults):
            lines = [STATUS_LINE[status]]
            for name, value in defaults:
                lowered = name.lower()
                if lowered in _STATEFUL:
                    break
                lines.append(b"%s: %s\r\n" % (lowered, value))
            else:
                start = b"".join(lines)
        starts[status] = start
        return start

    def content_type(self, media_type: bytes) -> bytes | None:
        """The `content-type` line of `media_type`, as `_head` writes it."""
        types = self._types
        line = types.get(media_type)
        if line is None and media_type not in types:
            if len(types) >= _MOST_TYPES:
                types.clear()
            checked = _checked([(b"content-type", media_type)])
            line = types[media_type] = b"content-type: %s\r\n" % media_type if checked else None
        return line


def _checked(lines: list[tuple[bytes, bytes]]) -> bool:
    """Whether `_head` accepts `lines` (bytes, no byte its patterns refuse)."""
    try:
        names = b"".join([name for name, _ in lines])
        values = b"".join([value for _, value in lines])
    except TypeError:
        return False
    return names.translate(_NAME_MARKS) == names and values.translate(_VALUE_MARKS) == values


class ResponseHeadCycle(RequestResponseCycle):
    """uvicorn's cycle; a response head's lines are checked by two `translate` calls."""

    # The server's kept head parts (`send_plain`), given by `gateway serve`'s protocol.
    heads: PlainHeads | None = None

    async def send(self, message: ASGISendEvent) -> None:
        head = None
        if message["type"] == "http.response.start" and self._plain():
            head = self._head(message.get("headers", []), message["status"])
        if head is None:
            await super().send(message)
            return
        self.transport.write(head)

    def send_whole(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        lines: bytes = b"",
        lines_at: int = 0,
    ) -> bool:
        """`http.response.start` (`status`, `headers`), then `body` as the last
        `http.response.body`, handled as `send` handles the two messages, the head and
        the body passed to the transport in one `writelines` call (as
        `proxy.connection_deadlines` combines them) without two ASGI messages and
        coroutines. False, with nothing done, unless this is the plain case: `headers`
        announce `body`'s exact length, no transfer coding, no HEAD request, and the head
        is one `send` writes itself (the caller then sends the two messages).

        `lines`: header lines the gateway rendered itself (`proxy.rate_headers.rate_lines`),
        written as they are after the first `lines_at` of `headers`: the head is the one
        `send` writes for `headers` with those lines' pairs inserted there."""
        length = b"%d" % len(body)
        framing = _length_lines(self.default_headers, length), _length_lines(headers, length)
        if self.scope["method"] == "HEAD" or min(framing) < 0 or max(framing) == 0:
            return False
        head = self._head(headers, status, lines, lines_at) if self._plain() else None
        if head is None:
            return False
        # uvicorn's body `send` for the last body of a response announced by its length.
        self.expected_content_length = 0
        self.transport.writelines((head, body))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True

    def send_plain(self, status: int, media_type: bytes, body: bytes, lines: bytes = b"") -> bool:
        """`send_whole(status, [(b"content-type", media_type), (b"content-length",
        <body's length>)], body, lines)`, the head put together from the parts `heads`
        keeps (each checked once) instead of line by line: the same bytes, in one
        `writelines` call, and the same state. False, with nothing done, where
        `send_whole` would decline, for a connection not kept alive (its head names
        the close), and where `heads` has no part (then `send_whole` decides)."""
        heads = self.heads
        if heads is None or not self.keep_alive or self.scope["method"] == "HEAD":
            return False
        if not self._plain():
            return False
        start = heads.start(status, self.default_headers)
        if start is None:
            return False
        media = heads.content_type(media_type)
        if media is None:
            return False
        # What `_head` and `send_whole` set for such a head (content-length, no coding).
        self.response_started = True
        self.waiting_for_100_continue = False
        self.chunked_encoding = False
        self.expected_content_length = 0
        length = b"content-length: %d\r\n\r\n" % len(body)
        self.transport.writelines((start + lines + media + length, body))
        self.response_complete = True
        self.message_event.set()
        self.on_response()
        return True

    def whole_body(self) -> bytes | None:
        """The request's body when all of it has arrived and uvicorn's `receive` would
        return it at once as one last `http.request` message (no `100 Continue` owed, the
        client there, the response not sent), with what that `receive` does done: reading
        resumed, the message event cleared, the buffer emptied. None, with nothing done,
        otherwise (then `receive` as usual). Spares the two coroutines and the message of
        a `receive` per request."""
        if (
            self.more_body
            or self.waiting_for_100_continue
            or self.disconnected
            or self.response_complete
            or not self.message_event.is_set()
        ):
            return None
        self.flow.resume_reading()
        self.message_event.clear()
        body = bytes(self.body)
        self.body = bytearray()
        return body

    def _plain(self) -> bool:
        """Whether a response head now is one uvicorn's `send` would just write (not
        the cycle's second head, a disconnected client, paused flow or access logging)."""
        return not (
            self.response_started or self.disconnected or self.flow.write_paused or self.access_log
        )

    def _head(
        self,
        message_headers: Iterable[tuple[bytes, bytes]],
        status_code: int,
        lines: bytes = b"",
        lines_at: int = 0,
    ) -> bytes | None:
        """The response head uvicorn's `send` writes for an `http.response.start` message
        (`_plain` holds), with the cycle's state updated as that `send` updates it;
        None, with nothing changed, for a head it refuses (left to it, for its error).
        `lines` (see `send_whole`) go in after the first `lines_at` message headers."""
        headers = self.default_headers + list(message_headers)
        try:
            # INVARIANT: both patterns match one character, so a match in the joined
            # names (values) is a match in one name (value), and none is none.
            names = b"".join([name for name, _ in headers])
            values = b"".join([value for _, value in headers])
            refused = names.translate(_NAME_MARKS) != names or (
                values.translate(_VALUE_MARKS) != values
            )
        except TypeError:  # not bytes: uvicorn's own send says what is wrong
            refused = True
        if refused:
            return None
        if names.lower() != names:  # uvicorn writes every name in lower case
            headers = [(name.lower(), value) for name, value in headers]
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        for name, value in headers:
            if name in _STATEFUL:  # uvicorn's three tests, in its order
                if name == b"content-length":
                    if self.chunked_encoding is None:
                        self.expected_content_length = int(value.decode())
                        self.chunked_encoding = False
                elif name == b"transfer-encoding":
                    if value.lower() == b"chunked":
                        self.expected_content_length = 0
                        self.chunked_encoding = True
                else:
                    connection = [token.lower().strip() for token in value.split(b",")]
                    if b"close" in connection:
                        self.keep_alive = False
                        has_connection_close = True
            content.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status_code not in (204, 304)
        ):
            # Neither content-length nor transfer-encoding specified
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        if lines:
            # INVARIANT: `rate_lines` renders lines uvicorn accepts (tests/proxy/
            # test_proxy_response_head.py), names in lower case, none that change the
            # cycle's state: written as they are, unchecked.
            content.insert(1 + 4 * (len(self.default_headers) + lines_at), lines)
        content.append(b"\r\n")
        return b"".join(content)


def _length_lines(lines: list[tuple[bytes, bytes]], length: bytes) -> int:
    """How many of `lines` are `content-length: <length>`; -1 if any other frames a
    body (another length, a transfer coding)."""
    count = 0
    for name, value in lines:
        lowered = name.lower()
        if lowered in _FRAMING:
            if lowered != b"content-length" or value != length:
                return -1
            count += 1
    return count
