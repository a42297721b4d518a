"""A fast OpenAI-compatible mock upstream for benchmarks and end-to-end tests.

Raw asyncio protocol + httptools parser rather than a web framework: in the
benchmark the mock shares a core with the load generator, so every
microsecond it spends is a microsecond the gateway measurement loses.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``,
``POST /v1/embeddings``, ``POST /v1/responses`` (OpenAI Responses API),
``POST /v1/messages`` (Anthropic Messages API), ``GET /v1/models``. Usage is deterministic: prompt
tokens are the number of whitespace-separated words in the prompt (at least
1) and a completion is always ``COMPLETION_TOKENS`` tokens.

Modes:

- ``instant``: every answer, streamed or not, is written at once.
- ``paced``: streamed answers send ``STREAM_CHUNKS`` chunks ``CHUNK_INTERVAL_S``
  apart (non-streamed answers stay instant).

Streams end with a chunk carrying ``usage`` when
``stream_options.include_usage`` is true, then ``data: [DONE]``.

API::

    upstream = await start_mock_upstream("127.0.0.1", 0, "paced")
    upstream.base_url  # "http://127.0.0.1:PORT/v1"
    await upstream.close()

CLI: ``python -m bench.mock_upstream --port 8001 --mode instant|paced``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from functools import partial
from typing import Any, Literal, cast

import httptools
import msgspec

__all__ = [
    "CHUNK_INTERVAL_S",
    "COMPLETION_TOKENS",
    "STREAM_CHUNKS",
    "MockUpstream",
    "Mode",
    "main",
    "start_mock_upstream",
]

Mode = Literal["instant", "paced"]

STREAM_CHUNKS = 20
CHUNK_INTERVAL_S = 0.020
COMPLETION_TOKENS = STREAM_CHUNKS
CREATED = 1_700_000_000
EMBEDDING_DIMENSIONS = 8
MODELS = ("mock-model", "gpt-4", "gpt-4o-mini", "text-embedding-3-small")

_JSON_HEADERS = b"Content-Type: application/json\r\n"
_SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_ENCODER = msgspec.json.Encoder()
_AGENT_PATHS = frozenset({b"/v1/responses", b"/v1/messages"})


class _Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def _usage(prompt_tokens: int, completion_tokens: int) -> _Usage:
    return _Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


def _count_words(value: Any) -> int:
    """Words in a prompt, a message list, or a list of inputs (deterministic)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(item) for item in value)
    if isinstance(value, dict):
        return _count_words(value.get("content", "")) + _count_words(value.get("text", ""))
    return 0


def _prompt_tokens(body: dict[str, Any]) -> int:
    source = body.get("messages", body.get("prompt", body.get("input", "")))
    return max(1, _count_words(source))


def _response(status: int, reason: str, payload: bytes, headers: bytes = _JSON_HEADERS) -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(payload)}\r\n".encode()
    return head + headers + b"\r\n" + payload


def _error(status: int, reason: str, message: str) -> bytes:
    payload = _ENCODER.encode({"error": {"message": message, "type": "invalid_request_error"}})
    return _response(status, reason, payload)


def _chunk(data: bytes) -> bytes:
    """One HTTP chunk holding one SSE event."""
    event = b"data: " + data + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def _stream_events(body: dict[str, Any], chat: bool) -> list[bytes]:
    """Every HTTP chunk of a streamed answer, in order, ending with the terminator."""
    model = str(body.get("model", "mock-model"))
    kind = "chat.completion.chunk" if chat else "text_completion"
    events: list[bytes] = []
    for index in range(STREAM_CHUNKS):
        text = f"tok{index} "
        choice: dict[str, Any] = (
            {"index": 0, "delta": {"content": text}, "finish_reason": None}
            if chat
            else {"index": 0, "text": text, "finish_reason": None}
        )
        if index == STREAM_CHUNKS - 1:
            choice["finish_reason"] = "stop"
        event = {"id": "mock-1", "object": kind, "created": CREATED, "model": model}
        events.append(_chunk(_ENCODER.encode({**event, "choices": [choice]})))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        usage = _usage(_prompt_tokens(body), COMPLETION_TOKENS)
        event = {"id": "mock-1", "object": kind, "created": CREATED, "model": model}
        events[-1] += _chunk(_ENCODER.encode({**event, "choices": [], "usage": usage}))
    events[-1] += _chunk(b"[DONE]") + b"0\r\n\r\n"
    return events


def _completion(body: dict[str, Any], chat: bool) -> bytes:
    text = " ".join(f"tok{index}" for index in range(COMPLETION_TOKENS))
    usage = _usage(_prompt_tokens(body), COMPLETION_TOKENS)
    model = str(body.get("model", "mock-model"))
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": text, "finish_reason": "stop"}
    )
    kind = "chat.completion" if chat else "text_completion"
    payload = {"id": "mock-1", "object": kind, "created": CREATED, "model": model}
    return _response(200, "OK", _ENCODER.encode({**payload, "choices": [choice], "usage": usage}))


def _named_chunk(kind: str, payload: dict[str, Any]) -> bytes:
    """One HTTP chunk holding one named SSE event (Responses and Messages streams)."""
    event = b"event: " + kind.encode() + b"\ndata: " + _ENCODER.encode(payload) + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def _agent_answer(path: bytes, body: dict[str, Any]) -> bytes | list[bytes]:
    """A Responses or Messages answer: the whole response, or its stream's HTTP chunks."""
    model = str(body.get("model", "mock-model"))
    words = [f"tok{index}" for index in range(COMPLETION_TOKENS)]
    usage = {"input_tokens": _prompt_tokens(body), "output_tokens": COMPLETION_TOKENS}
    done: dict[str, Any] = {"id": "msg_1", "model": model, "usage": usage}
    Event = tuple[str, dict[str, Any]]
    if path == b"/v1/responses":
        part = {"type": "output_text", "text": " ".join(words), "annotations": []}
        item = {"id": "msg_1", "type": "message", "role": "assistant", "content": [part]}
        done |= {"id": "resp_1", "object": "response", "status": "completed"}
        done |= {"created_at": CREATED, "output": [item]}
        first: Event = ("response.created", {"response": {**done, "output": [], "usage": None}})
        deltas: list[Event] = [
            ("response.output_text.delta", {"delta": word + " "}) for word in words
        ]
        last: Event = ("response.completed", {"response": done})
    else:
        done |= {"type": "message", "role": "assistant", "stop_sequence": None}
        done |= {"content": [{"type": "text", "text": " ".join(words)}], "stop_reason": "end_turn"}
        first = ("message_start", {"message": {**done, "content": [], "stop_reason": None}})
        deltas = [
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w + " "}})
            for w in words
        ]
        last = ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": usage})
    if body.get("stream") is not True:
        return _response(200, "OK", _ENCODER.encode(done))
    events = [_named_chunk(kind, {"type": kind, **fields}) for kind, fields in (first, *deltas)]
    events[-1] += _named_chunk(last[0], {"type": last[0], **last[1]})
    if path == b"/v1/messages":
        events[-1] += _named_chunk("message_stop", {"type": "message_stop"})
    events[-1] += b"0\r\n\r\n"
    return events


def _embeddings(body: dict[str, Any]) -> bytes:
    inputs = body.get("input", "")
    count = len(inputs) if isinstance(inputs, list) else 1
    vector = [round(0.125 * (dimension + 1), 3) for dimension in range(EMBEDDING_DIMENSIONS)]
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
    prompt = _prompt_tokens(body)
    payload = {
        "object": "list",
        "data": data,
        "model": str(body.get("model", "text-embedding-3-small")),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }
    return _response(200, "OK", _ENCODER.encode(payload))


_MODELS_RESPONSE = _response(
    200,
    "OK",
    _ENCODER.encode(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": CREATED, "owned_by": "mock"}
                for name in MODELS
            ],
        }
    ),
)


class _Connection(asyncio.Protocol):
    """One keep-alive client connection; requests are answered in order."""

    def __init__(self, mode: Mode, connections: set[_Connection]) -> None:
        self._mode = mode
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._stream_task: asyncio.Task[None] | None = None
        self._pending: list[tuple[bytes, bytes, bytes]] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        if self._stream_task is not None:
            self._stream_task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_error(400, "Bad Request", "malformed HTTP request"))
            self.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        request = (method, self._url.split(b"?", 1)[0], b"".join(self._body))
        if self._stream_task is not None:
            self._pending.append(request)  # pipelined behind a paced stream
        else:
            self._handle(*request)

    # request handling
    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _handle(self, method: bytes, path: bytes, raw_body: bytes) -> None:
        if method == b"GET" and path == b"/v1/models":
            self._write(_MODELS_RESPONSE)
            return
        routes = {
            b"/v1/chat/completions",
            b"/v1/completions",
            b"/v1/embeddings",
            b"/v1/responses",
            b"/v1/messages",
        }
        if path not in routes:
            self._write(_error(404, "Not Found", f"no route {path.decode(errors='replace')}"))
            return
        if method != b"POST":
            self._write(_error(405, "Method Not Allowed", "use POST"))
            return
        try:
            body = msgspec.json.decode(raw_body)
        except msgspec.DecodeError:
            self._write(_error(400, "Bad Request", "request body is not valid JSON"))
            return
        if not isinstance(body, dict):
            self._write(_error(400, "Bad Request", "request body must be a JSON object"))
            return
        if path == b"/v1/embeddings":
            self._write(_embeddings(body))
            return
        chat = path == b"/v1/chat/completions"
        answer = _agent_answer(path, body) if path in _AGENT_PATHS else None
        if isinstance(answer, bytes):
            self._write(answer)
            return
        if answer is None and body.get("stream") is not True:
            self._write(_completion(body, chat))
            return
        events = answer if answer is not None else _stream_events(body, chat)
        if self._mode == "instant":
            self._write(_SSE_HEADERS + b"".join(events))
            return
        self._write(_SSE_HEADERS)
        self._stream_task = asyncio.get_running_loop().create_task(self._pace(events))

    async def _pace(self, events: list[bytes]) -> None:
        for index, event in enumerate(events):
            if index:
                await asyncio.sleep(CHUNK_INTERVAL_S)
            self._write(event)
        self._stream_task = None
        while self._pending and self._stream_task is None:
            self._handle(*self._pending.pop(0))


class MockUpstream:
    """A running mock upstream; ``close()`` stops it and drops open connections."""

    def __init__(self, server: asyncio.Server, connections: set[_Connection]) -> None:
        self._server = server
        self._connections = connections
        host, port = server.sockets[0].getsockname()[:2]
        self.host: str = host
        self.port: int = port
        self.base_url = f"http://{host}:{port}/v1"

    async def close(self) -> None:
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        await self._server.wait_closed()


async def start_mock_upstream(
    host: str = "127.0.0.1", port: int = 0, mode: Mode = "instant"
) -> MockUpstream:
    """Start serving on ``host:port`` (0 picks a free port) in the running loop."""
    connections: set[_Connection] = set()
    server = await asyncio.get_running_loop().create_server(
        partial(_Connection, mode, connections), host, port, backlog=4096
    )
    return MockUpstream(server, connections)


async def _serve_forever(host: str, port: int, mode: Mode) -> None:
    upstream = await start_mock_upstream(host, port, mode)
    print(f"mock upstream ({mode}) listening on {upstream.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await upstream.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--mode", choices=("instant", "paced"), default="instant")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(_serve_forever(args.host, args.port, args.mode))


if __name__ == "__main__":
    main()
