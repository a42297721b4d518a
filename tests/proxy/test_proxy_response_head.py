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
from proxy.response_head import _NAME_MARKS, _VALUE_MARKS, PlainHeads, ResponseHeadCycle


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.calls = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.calls += 1

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        self.written.extend(parts)
        self.calls += 1

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class _Flow:
    write_paused = False


def _cycle(
    kind: type[RequestResponseCycle],
    method: str,
    keep_alive: bool,
    on_response: Any = lambda: None,
) -> Any:
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
        on_response=on_response,
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


BODIES = [b"", b"hello", b'{"id":"chatcmpl-1","object":"chat.completion"}']
WHOLE_HEADS = [
    [(b"content-type", b"application/json"), (b"content-length", b"{n}")],
    [*RATE_LINES, (b"content-type", b"application/json"), (b"content-length", b"{n}")],
    [(b"Content-Length", b"{n}"), (b"x-other", b"v")],
    [(b"content-length", b"{n}"), (b"content-length", b"{n}")],
    [(b"content-length", b"{n}"), (b"connection", b"close")],
    [(b"content-type", b"application/json")],  # no length: chunked
    [(b"content-length", b"999")],  # a length that is not the body's
    [(b"content-length", b"{n}"), (b"transfer-encoding", b"chunked")],
    [(b"content-length", b"{n}"), (b"transfer-encoding", b"gzip")],
    [(b"bad name", b"v"), (b"content-length", b"{n}")],
    [(b"content-length", b"{n}"), (b"x-ok", b"line\r\nbreak")],
]


async def _whole(
    kind: type[RequestResponseCycle],
    method: str,
    keep_alive: bool,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    disconnected: bool = False,
) -> Any:
    """A whole reply: `send_whole` for ours (its two messages if it declines), the two
    messages for uvicorn's; what went out, in how many calls, and the cycle's state."""
    completed: list[bool] = []
    cycle = _cycle(kind, method, keep_alive, on_response=lambda: completed.append(True))
    cycle.disconnected = disconnected
    taken = False
    try:
        if kind is ResponseHeadCycle:
            taken = cycle.send_whole(status, headers, body)
        if not taken:
            await cycle.send({"type": "http.response.start", "status": status, "headers": headers})
            await cycle.send({"type": "http.response.body", "body": body, "more_body": False})
        outcome: object = b"".join(cycle.transport.written)
    except Exception as exc:
        outcome = (type(exc), str(exc))
    state = (
        cycle.response_started,
        cycle.response_complete,
        cycle.chunked_encoding,
        cycle.expected_content_length,
        cycle.keep_alive,
        cycle.waiting_for_100_continue,
        cycle.message_event.is_set(),
        cycle.transport.closed,
        completed,
    )
    return outcome, state, taken, cycle.transport.calls


@pytest.mark.parametrize("template", WHOLE_HEADS)
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("method", ["POST", "GET", "HEAD"])
@pytest.mark.parametrize("status", [200, 429, 502])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_whole_reply_sent_at_once_is_the_two_messages_of_uvicorns_cycle(
    template: list[tuple[bytes, bytes]], body: bytes, method: str, status: int, keep_alive: bool
) -> None:
    n = b"%d" % len(body)
    headers = [(name, value.replace(b"{n}", n)) for name, value in template]

    async def both() -> tuple[Any, Any]:
        ours = await _whole(ResponseHeadCycle, method, keep_alive, status, headers, body)
        theirs = await _whole(RequestResponseCycle, method, keep_alive, status, headers, body)
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert ours[:2] == theirs[:2]
    plain = method != "HEAD" and template in WHOLE_HEADS[:5]
    # The plain case goes out at once, in one call; anything else as two messages.
    assert ours[2] is plain
    if plain:
        assert ours[3] == 1


def test_a_whole_reply_to_a_client_gone_is_left_to_the_two_messages() -> None:
    headers = [(b"content-length", b"5")]

    async def both() -> tuple[Any, Any]:
        ours = await _whole(
            ResponseHeadCycle, "POST", True, 200, headers, b"hello", disconnected=True
        )
        theirs = await _whole(
            RequestResponseCycle, "POST", True, 200, headers, b"hello", disconnected=True
        )
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert ours[:2] == theirs[:2]
    assert ours[0] == b""
    assert ours[2] is False


class _ReadingFlow:
    write_paused = False

    def __init__(self) -> None:
        self.resumed = 0

    def resume_reading(self) -> None:
        self.resumed += 1


@pytest.mark.parametrize("body", [b"", b'{"model":"m"}'])
@pytest.mark.parametrize("more_body", [False, True])
@pytest.mark.parametrize("event_set", [True, False])
@pytest.mark.parametrize("expect_continue", [False, True])
@pytest.mark.parametrize("disconnected", [False, True])
def test_a_whole_request_body_taken_at_once_is_what_receive_returns(
    body: bytes, more_body: bool, event_set: bool, expect_continue: bool, disconnected: bool
) -> None:
    """`whole_body` gives the body `receive` would return at once in one last message,
    leaving the cycle as `receive` leaves it; in every other case it does nothing."""

    def cycle() -> Any:
        made = _cycle(ResponseHeadCycle, "POST", True)
        made.flow = _ReadingFlow()
        made.body = bytearray(body)
        made.more_body = more_body
        made.waiting_for_100_continue = expect_continue
        made.disconnected = disconnected
        if event_set:
            made.message_event.set()
        return made

    def state(made: Any) -> tuple[object, ...]:
        return (
            bytes(made.body),
            made.message_event.is_set(),
            made.flow.resumed,
            b"".join(made.transport.written),
            made.waiting_for_100_continue,
        )

    ours = cycle()
    taken = ours.whole_body()
    plain = not (more_body or expect_continue or disconnected) and event_set
    if not plain:
        untouched = cycle()
        assert taken is None
        assert state(ours) == state(untouched)
        return

    async def received() -> tuple[Any, Any]:
        theirs = cycle()
        message = await theirs.receive()
        return message, theirs

    message, theirs = asyncio.run(received())
    assert message == {"type": "http.request", "body": body, "more_body": False}
    assert taken == body
    assert state(ours) == state(theirs)


_RATE_TEXT = (
    b"retry-after: 12\r\n"
    b"x-ratelimit-limit-requests: 60\r\n"
    b"x-ratelimit-remaining-requests: 0\r\n"
    b"x-ratelimit-reset-requests: 11.5s\r\n"
)
_RATE_PAIRS = [
    (name, value)
    for name, _, value in (line.partition(b": ") for line in _RATE_TEXT.split(b"\r\n"))
    if name
]


@pytest.mark.parametrize("lines_at", [0, 1, 2])
@pytest.mark.parametrize("method", ["POST", "HEAD"])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_rate_lines_sent_as_they_are_are_the_pairs_in_uvicorns_cycle(
    lines_at: int, method: str, keep_alive: bool
) -> None:
    """Rendered rate lines handed to `send_whole` go out where their pairs would, after
    the first `lines_at` headers: the same bytes and state as uvicorn's cycle sending
    the pairs there (and when `send_whole` declines, nothing is sent: the caller sends
    the pairs)."""
    body = b'{"ok": true}'
    headers = [
        (b"x-budget-reset", b"2027-01-01T00:00:00Z"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    with_pairs = headers[:lines_at] + _RATE_PAIRS + headers[lines_at:]

    async def both() -> tuple[Any, Any, bool]:
        ours = _cycle(ResponseHeadCycle, method, keep_alive)
        taken = ours.send_whole(429, headers, body, _RATE_TEXT, lines_at)
        if not taken:
            assert ours.transport.written == []
            ours = _cycle(ResponseHeadCycle, method, keep_alive)
            await ours.send({"type": "http.response.start", "status": 429, "headers": with_pairs})
            await ours.send({"type": "http.response.body", "body": body, "more_body": False})
        theirs = _cycle(RequestResponseCycle, method, keep_alive)
        await theirs.send({"type": "http.response.start", "status": 429, "headers": with_pairs})
        await theirs.send({"type": "http.response.body", "body": body, "more_body": False})
        return ours, theirs, taken

    ours, theirs, taken = asyncio.run(both())
    assert taken is (method != "HEAD")
    assert b"".join(ours.transport.written) == b"".join(theirs.transport.written)
    assert (ours.response_complete, ours.keep_alive, ours.expected_content_length) == (
        theirs.response_complete,
        theirs.keep_alive,
        theirs.expected_content_length,
    )


_DEFAULTS = [
    [(b"date", b"Mon, 07 Dec 2026 13:00:00 GMT"), (b"server", b"uvicorn")],
    [(b"date", b"Mon, 07 Dec 2026 13:00:01 GMT"), (b"Server", b"uvicorn"), (b"X-Extra", b"1")],
    [],
    [(b"date", b"Mon, 07 Dec 2026 13:00:00 GMT"), (b"connection", b"close")],
    [(b"content-length", b"3")],
    [(b"bad name", b"v")],
    [(b"x-ok", b"line\r\nbreak")],
]
_MEDIA_TYPES = [b"application/json", b"text/event-stream; charset=utf-8", b"a\r\nb", b""]


@pytest.mark.parametrize("defaults", range(len(_DEFAULTS)))
@pytest.mark.parametrize("media_type", _MEDIA_TYPES)
@pytest.mark.parametrize("rate", [False, True])
@pytest.mark.parametrize("method", ["POST", "HEAD"])
@pytest.mark.parametrize("status", [200, 429, 502, 999])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_plain_reply_from_the_kept_parts_is_the_two_messages_of_uvicorns_cycle(
    defaults: int, media_type: bytes, rate: bool, method: str, status: int, keep_alive: bool
) -> None:
    """`send_plain` (the head from `PlainHeads`' parts): the bytes, the number of writes
    and the cycle's state of uvicorn's cycle sending the two messages of the reply;
    where it declines it sends nothing (the caller then goes on as before). The kept
    parts answer a second reply, and the same parts of another list of default lines
    are made afresh."""
    body = b'{"ok": true}'
    lines = _RATE_TEXT if rate else b""
    pairs = [
        *(_RATE_PAIRS if rate else []),
        (b"content-type", media_type),
        (b"content-length", b"%d" % len(body)),
    ]
    heads = PlainHeads()

    async def run(kind: type[RequestResponseCycle], plain: bool) -> Any:
        completed: list[bool] = []
        cycle = _cycle(kind, method, keep_alive, on_response=lambda: completed.append(True))
        cycle.default_headers = list(_DEFAULTS[defaults])
        taken = False
        try:
            if plain:
                cycle.heads = heads
                taken = cycle.send_plain(status, media_type, body, lines)
                if not taken:
                    assert cycle.transport.written == []
            if not taken:
                start = {"type": "http.response.start", "status": status, "headers": pairs}
                await cycle.send(start)
                await cycle.send({"type": "http.response.body", "body": body, "more_body": False})
            outcome: object = b"".join(cycle.transport.written)
        except Exception as exc:
            outcome = (type(exc), str(exc))
        state = (
            cycle.response_started,
            cycle.response_complete,
            cycle.chunked_encoding,
            cycle.expected_content_length,
            cycle.keep_alive,
            cycle.waiting_for_100_continue,
            cycle.message_event.is_set(),
            cycle.transport.closed,
            completed,
        )
        return outcome, state, taken, cycle.transport.calls

    async def replies() -> list[Any]:
        return [
            await run(ResponseHeadCycle, True),
            await run(ResponseHeadCycle, True),  # from the kept parts
            await run(RequestResponseCycle, False),
        ]

    first, again, theirs = asyncio.run(replies())
    assert first[:2] == theirs[:2]
    assert again[:3] == first[:3]
    usual = defaults < 3 and media_type in _MEDIA_TYPES[:2] + _MEDIA_TYPES[3:]
    assert first[2] is (usual and method != "HEAD" and keep_alive and status != 999)
    if first[2]:
        assert first[3] == 1


def test_plain_heads_start_again_for_a_new_list_of_default_lines() -> None:
    heads = PlainHeads()
    before = [(b"date", b"Mon, 07 Dec 2026 13:00:00 GMT"), (b"server", b"uvicorn")]
    after = [(b"date", b"Mon, 07 Dec 2026 13:00:01 GMT"), (b"server", b"uvicorn")]
    first = heads.start(200, before)
    assert first is not None and b"13:00:00" in first
    assert heads.start(200, before) is first
    second = heads.start(200, after)
    assert second is not None and b"13:00:01" in second
