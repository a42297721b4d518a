"""A load generator that keeps up: raw asyncio + httptools, one keep-alive
connection per concurrent worker, nanosecond timers.

A general-purpose client (aiohttp, httpx) costs more CPU per request than the
gateway under test would, so on a shared core it would measure itself. This
one does only what a benchmark needs: write pre-encoded request bytes, parse
the response, record time to first body byte (TTFT for SSE) and to the end.

CLI::

    python -m bench.loadgen --url http://127.0.0.1:8001/v1/chat/completions \
        --concurrency 64 --duration 5 [--stream] [--header 'Authorization: Bearer …']
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools
import msgspec

__all__ = [
    "Endpoint",
    "LoadResult",
    "Sample",
    "chat_body",
    "interleaved",
    "percentile",
    "run_load",
]

# What ends a complete stream: chat's terminator, the Responses API's last event, the
# Messages API's last event.
_STREAM_ENDS = (b"[DONE]", b"event: response.completed", b"event: message_stop")


class Endpoint(msgspec.Struct, frozen=True):
    """Where to send one kind of request, with the request pre-encoded."""

    host: str
    port: int
    raw_request: bytes

    @classmethod
    def post_json(cls, url: str, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> Endpoint:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        lines = [
            f"POST {parts.path or '/'} HTTP/1.1",
            f"Host: {host}:{port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        return cls(host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


class Sample(msgspec.Struct, frozen=True):
    """One finished request; times in nanoseconds from the request write."""

    status: int
    first_byte_ns: int
    total_ns: int
    complete: bool
    """False when a stream ended without ``data: [DONE]``."""


def chat_body(stream: bool, model: str = "mock-model", include_usage: bool = True) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark please"}],
        "max_tokens": 32,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": include_usage}
    return msgspec.json.encode(body)


class _Connection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[Sample] | None = None
        self._started = 0
        self._first_byte = 0
        self._tail = b""
        self._stream_ended = False
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("server closed the connection"))
        if not self._lost.done():
            self._lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self._done is not None and not self._done.done():
                self._done.set_exception(ConnectionError(f"bad response: {error}"))

    def on_message_begin(self) -> None:
        self._first_byte = 0
        self._tail = b""
        self._stream_ended = False

    def on_body(self, body: bytes) -> None:
        if not self._first_byte:
            self._first_byte = time.perf_counter_ns()
        window = self._tail + body
        if not self._stream_ended:
            self._stream_ended = any(end in window for end in _STREAM_ENDS)
        self._tail = window[-32:]

    def on_message_complete(self) -> None:
        now = time.perf_counter_ns()
        first = self._first_byte or now
        done = self._done
        if done is None or done.done():
            return
        is_sse = b"data:" in self._tail or self._tail.endswith(b"\n\n")
        complete = not is_sse or self._stream_ended
        status = self._parser.get_status_code()
        done.set_result(Sample(status, first - self._started, now - self._started, complete))

    async def send(self, raw_request: bytes) -> Sample:
        if self._transport is None:
            raise ConnectionError("connection is closed")
        self._done = asyncio.get_running_loop().create_future()
        self._started = time.perf_counter_ns()
        self._transport.write(raw_request)
        return await self._done

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            await self._lost


async def _connect(endpoint: Endpoint) -> _Connection:
    _, protocol = await asyncio.get_running_loop().create_connection(
        _Connection, endpoint.host, endpoint.port
    )
    return protocol


def percentile(values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not values:
        return 0
    rank = max(0, min(len(values) - 1, math.ceil(fraction * len(values)) - 1))
    return values[rank]


class LoadResult(msgspec.Struct, frozen=True):
    """What one load phase measured; latencies in milliseconds."""

    completed: int
    errors: int
    elapsed_s: float
    rate_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], errors: int, elapsed_s: float) -> LoadResult:
        good = [s for s in samples if s.status == 200 and s.complete]
        failed = errors + len(samples) - len(good)
        totals = sorted(s.total_ns for s in good)
        firsts = sorted(s.first_byte_ns for s in good)
        ms = 1e-6
        return cls(
            completed=len(good),
            errors=failed,
            elapsed_s=round(elapsed_s, 3),
            rate_per_s=round(len(good) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            latency_p50_ms=round(percentile(totals, 0.50) * ms, 3),
            latency_p99_ms=round(percentile(totals, 0.99) * ms, 3),
            ttft_p50_ms=round(percentile(firsts, 0.50) * ms, 3),
            ttft_p99_ms=round(percentile(firsts, 0.99) * ms, 3),
        )


async def run_load(
    endpoint: Endpoint,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.5,
    max_requests: int = 2_000_000,
) -> LoadResult:
    """Closed loop: ``concurrency`` workers each send back-to-back for ``duration_s``.

    Requests that finish during the warm-up or after the window are not counted. ``max_requests``
    bounds memory when the target is unexpectedly fast.
    """
    connections = await asyncio.gather(*(_connect(endpoint) for _ in range(concurrency)))
    samples: list[Sample] = []
    errors = 0
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup_s
    stop_at = measure_from + duration_s

    async def worker(index: int, connection: _Connection) -> None:
        nonlocal errors
        # Stagger the starts over the warm-up: workers that start together stay
        # in lock-step on paced streams, and completions then arrive in waves
        # that a short window counts unevenly.
        await asyncio.sleep(index * warmup_s / concurrency)
        while loop.time() < stop_at and len(samples) < max_requests:
            try:
                sample = await connection.send(endpoint.raw_request)
            except ConnectionError:
                errors += 1
                return
            if measure_from <= loop.time() < stop_at:
                samples.append(sample)

    try:
        await asyncio.gather(*(worker(i, c) for i, c in enumerate(connections)))
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))
    # Only requests that finished inside the window count, so the rate is
    # completions per second of window even for long streams.
    return LoadResult.from_samples(samples, errors, duration_s)


async def interleaved(endpoints: Sequence[Endpoint], count: int) -> list[list[Sample]]:
    """Concurrency 1: send to each endpoint in turn, ``count`` rounds.

    Interleaving makes both series see the same machine noise, so their
    difference is the added latency.
    """
    connections = [await _connect(endpoint) for endpoint in endpoints]
    series: list[list[Sample]] = [[] for _ in endpoints]
    try:
        for _ in range(count):
            for index, endpoint in enumerate(endpoints):
                series[index].append(await connections[index].send(endpoint.raw_request))
    finally:
        for connection in connections:
            await connection.close()
    return series


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="closed-loop HTTP load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args(argv)
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in args.header]
    endpoint = Endpoint.post_json(
        args.url, chat_body(args.stream, args.model), [(n, v) for n, v in headers]
    )
    import uvloop

    result = uvloop.run(run_load(endpoint, args.concurrency, args.duration))
    print(msgspec.json.encode(result).decode())


if __name__ == "__main__":
    main()
