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
from typing import Final

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

__all__ = ["ResponseHeadCycle"]


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


class ResponseHeadCycle(RequestResponseCycle):
    """uvicorn's cycle; a response head's lines are checked by two `translate` calls."""

    async def send(self, message: ASGISendEvent) -> None:
        if (
            self.response_started
            or self.disconnected
            or self.flow.write_paused
            or self.access_log
            or message["type"] != "http.response.start"
        ):
            await super().send(message)
            return
        headers = self.default_headers + list(message.get("headers", []))
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
            await super().send(message)
            return
        if names.lower() != names:  # uvicorn writes every name in lower case
            headers = [(name.lower(), value) for name, value in headers]
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
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
        content.append(b"\r\n")
        self.transport.write(b"".join(content))
