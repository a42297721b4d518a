"""A throwaway pass-through Litestar proxy (no auth, no policy) used only to
choose the upstream HTTP client by measurement (issue 4 point 5, issue 7).

It forwards ``POST /v1/chat/completions`` to ``BENCH_UPSTREAM_URL`` with one
shared client opened in the lifespan, relaying SSE chunk by chunk. The client
is picked by ``BENCH_UPSTREAM_CLIENT``: ``httpx`` (stock AsyncClient),
``httpx-aiohttp`` (httpx API on the httpx-aiohttp transport) or ``aiohttp``.

Run::

    BENCH_UPSTREAM_CLIENT=aiohttp BENCH_UPSTREAM_URL=http://127.0.0.1:8001/v1 \
    taskset -c 0 uvicorn bench.passthrough_proxy:app_from_env --factory \
        --loop uvloop --http httptools --no-access-log --port 4000
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, Protocol

import aiohttp
import httpx
import msgspec
from litestar import Litestar, Request, Response, post
from litestar.datastructures import State
from litestar.response import Stream

__all__ = ["CLIENT_KINDS", "ClientKind", "Upstream", "app_from_env", "create_app", "open_upstream"]

ClientKind = Literal["httpx", "httpx-aiohttp", "aiohttp"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("httpx", "httpx-aiohttp", "aiohttp")
POOL_SIZE = 1024
_FORWARDED_HEADERS = {"content-type": "application/json"}


class _StreamFlag(msgspec.Struct):
    stream: bool = False


class Upstream(Protocol):
    """What the handler needs from an upstream client."""

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    def stream(
        self, path: str, body: bytes
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...

    async def aclose(self) -> None: ...


class _HttpxUpstream:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(path, content=body, headers=_FORWARDED_HEADERS)
        return response.status_code, response.content

    @asynccontextmanager
    async def stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        request = self._client.build_request("POST", path, content=body, headers=_FORWARDED_HEADERS)
        response = await self._client.send(request, stream=True)
        try:
            yield response.aiter_raw()
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


class _AiohttpUpstream:
    def __init__(self, base_url: str) -> None:
        connector = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE)
        self._base = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(connector=connector)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        url = self._base + path
        async with self._session.post(url, data=body, headers=_FORWARDED_HEADERS) as response:
            return response.status, await response.read()

    @asynccontextmanager
    async def stream(self, path: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        url = self._base + path
        async with self._session.post(url, data=body, headers=_FORWARDED_HEADERS) as response:
            yield response.content.iter_any()

    async def aclose(self) -> None:
        await self._session.close()


def open_upstream(kind: ClientKind, base_url: str) -> Upstream:
    limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
    if kind == "httpx":
        return _HttpxUpstream(httpx.AsyncClient(base_url=base_url, limits=limits))
    if kind == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        # The transport's default session has aiohttp's 100-connection limit;
        # give it the same pool as the others so only the code path differs.
        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE)
            return aiohttp.ClientSession(connector=connector)

        transport = AiohttpTransport(limits=limits, client=session)
        return _HttpxUpstream(httpx.AsyncClient(base_url=base_url, transport=transport))
    return _AiohttpUpstream(base_url)


def _upstream(state: State) -> Upstream:
    upstream: Upstream = state["upstream"]
    return upstream


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[None, None, State]) -> Response[bytes] | Stream:
    body = await request.body()
    upstream = _upstream(request.app.state)
    if msgspec.json.decode(body, type=_StreamFlag).stream:
        return Stream(_relay(upstream, body), media_type="text/event-stream")
    status, content = await upstream.post("/chat/completions", body)
    return Response(content, status_code=status, media_type="application/json")


async def _relay(upstream: Upstream, body: bytes) -> AsyncIterator[bytes]:
    async with upstream.stream("/chat/completions", body) as chunks:
        async for chunk in chunks:
            yield chunk


def create_app(kind: ClientKind, upstream_base_url: str) -> Litestar:
    """A pass-through proxy whose one shared client lives in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state["upstream"] = open_upstream(kind, upstream_base_url)
        try:
            yield
        finally:
            await _upstream(app.state).aclose()

    # Per-request INFO lines of the HTTP clients cost ~30% throughput.
    for name in ("httpx", "httpcore", "aiohttp.client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Litestar(route_handlers=[chat_completions], lifespan=[lifespan], debug=False)


def app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory``: configured by environment variables."""
    wanted = os.environ.get("BENCH_UPSTREAM_CLIENT", "aiohttp")
    base_url = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8001/v1")
    for kind in CLIENT_KINDS:
        if kind == wanted:
            return create_app(kind, base_url)
    raise SystemExit(
        f"BENCH_UPSTREAM_CLIENT=`{wanted}` is not a known client; use one of {CLIENT_KINDS}"
    )
