"""The raw-ASGI pass-through floor: no framework at all, aiohttp to the upstream.

Issue 15's second floor, next to the Litestar + aiohttp one (`bench.passthrough_proxy`):
what a proxy on uvicorn + aiohttp costs when nothing but the ASGI callable stands
between the server and the upstream client — no routing, no key, no policy, no
ledger. It answers `POST /v1/chat/completions` (plain or SSE, relayed chunk by chunk)
and nothing else (404).

    BENCH_UPSTREAM_URL=http://127.0.0.1:8001/v1 taskset -c 0 uvicorn \\
        bench.raw_asgi_proxy:app_from_env --factory --loop uvloop --http httptools \\
        --no-access-log --port 4001
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from bench.passthrough_proxy import Upstream, open_upstream

__all__ = ["RawAsgiProxy", "app_from_env"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PATH = "/v1/chat/completions"
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class _StreamFlag(msgspec.Struct):
    stream: bool = False


_flag = msgspec.json.Decoder(_StreamFlag)


class RawAsgiProxy:
    """The ASGI callable; its one upstream client lives from lifespan start to end."""

    def __init__(self, upstream_base_url: str) -> None:
        self._base_url = upstream_base_url
        self._upstream: Upstream | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._upstream = open_upstream("aiohttp", self._base_url)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._upstream is not None:
                    await self._upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["path"] != _PATH or scope["method"] != "POST" or self._upstream is None:
            await send({"type": "http.response.start", "status": 404, "headers": _JSON})
            await send({"type": "http.response.body", "body": b'{"error":"not found"}'})
            return
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        if _flag.decode(body).stream:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            async with self._upstream.stream("/chat/completions", body) as chunks:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        status, content = await self._upstream.post("/chat/completions", body)
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": content})


def app_from_env() -> RawAsgiProxy:
    """Factory for ``uvicorn --factory``: the upstream from ``BENCH_UPSTREAM_URL``."""
    logging.getLogger("aiohttp.client").setLevel(logging.WARNING)
    return RawAsgiProxy(os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8001/v1"))
