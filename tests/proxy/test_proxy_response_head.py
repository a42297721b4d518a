"""`ResponseHeadCycle` writes exactly what uvicorn's own cycle writes, and refuses what
it refuses (proxy/response_head.py)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, RequestResponseCycle

from proxy.rate_headers import HEADER_NAMES
from proxy.response_head import _NAME_MARKS, _VALUE_MARKS, ResponseHeadCycle


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


class _Flow:
    write_paused = False


def _cycle(kind: type[RequestResponseCycle], method: str, keep_alive: bool) -> Any:
    logger = logging.getLogger("test.response_head")
    return kind(
        scope={"method": method},  # type: ignore[typeddict-item]
        transport=_Transport(),  # type: ignore[arg-type]
        flow=_Flow(),  # type: ignore[arg-type]
        logger=logger,
        access_logger=logger,
        access_log=False,
        default_headers=[(b"date", b"Mon, 07 Dec 2026 13:00:00 GMT"), (b"server", b"uvicorn")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


async def _send(
    kind: type[RequestResponseCycle], method: str, keep_alive: bool, message: Any
) -> Any:
    cycle = _cycle(kind, method, keep_alive)
    try:
        await cycle.send(message)
        outcome: object = b"".join(cycle.transport.written)
    except Exception as exc:
        outcome = (type(exc), str(exc))
    state = (
        cycle.response_started,
        cycle.chunked_encoding,
        cycle.expected_content_length,
        cycle.keep_alive,
        cycle.waiting_for_100_continue,
    )
    return outcome, state


RATE_LINES = [(name.encode(), b"59" if "retry" not in name else b"1") for name in HEADER_NAMES]
HEADS = [
    [(b"content-type", b"application/json"), (b"content-length", b"21")],
    [*RATE_LINES, (b"content-type", b"application/json"), (b"content-length", b"300")],
    [(b"Content-Length", b"5"), (b"content-length", b"7")],
    [(b"transfer-encoding", b"Chunked"), (b"X-Other", b"v")],
    [(b"transfer-encoding", b"gzip")],
    [(b"connection", b"keep-alive, Close")],
    [(b"connection", b"keep-alive")],
    [(b"content-type", b"text/event-stream")],
    [],
    [(b"bad name", b"v")],
    [(b"x-ok", b"line\r\nbreak")],
    [(b"x-first", b"bad\x01"), (b"bad:name", b"v")],
    [("x-str", b"v")],
    [(b"x-str", "v")],
    [(b"x-tab", b"a\tb")],
]


@pytest.mark.parametrize("headers", HEADS)
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
@pytest.mark.parametrize("status", [200, 204, 304, 429])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_the_head_and_the_cycles_state_are_uvicorns(
    headers: list[tuple[bytes, bytes]], method: str, status: int, keep_alive: bool
) -> None:
    message = {"type": "http.response.start", "status": status, "headers": headers}

    async def both() -> tuple[Any, Any]:
        ours = await _send(ResponseHeadCycle, method, keep_alive, message)
        theirs = await _send(RequestResponseCycle, method, keep_alive, message)
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert ours == theirs


def test_the_body_and_a_second_start_are_uvicorns() -> None:
    async def run(kind: type[RequestResponseCycle]) -> tuple[bytes, object]:
        cycle = _cycle(kind, "POST", True)
        start = {"type": "http.response.start", "status": 200, "headers": []}
        await cycle.send(start)
        await cycle.send({"type": "http.response.body", "body": b"hello", "more_body": False})
        try:
            await cycle.send(start)
            error: object = None
        except RuntimeError as exc:
            error = str(exc)
        return b"".join(cycle.transport.written), error

    async def both() -> tuple[Any, Any]:
        return await run(ResponseHeadCycle), await run(RequestResponseCycle)

    ours, theirs = asyncio.run(both())
    assert ours == theirs
    assert ours[0].endswith(b"5\r\nhello\r\n0\r\n\r\n")


@pytest.mark.parametrize(
    ("pattern", "marks"), [(HEADER_RE, _NAME_MARKS), (HEADER_VALUE_RE, _VALUE_MARKS)]
)
def test_a_text_the_marks_change_is_one_uvicorns_pattern_matches(
    pattern: re.Pattern[bytes], marks: bytes
) -> None:
    # Every byte, and every pair (so the pattern matches one byte, wherever it is).
    for first in range(256):
        one = bytes((first,))
        assert (one.translate(marks) != one) == bool(pattern.search(one))
        for second in range(256):
            pair = bytes((first, second))
            assert (pair.translate(marks) != pair) == bool(pattern.search(pair))
