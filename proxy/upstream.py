"""Talking to upstream providers: the shapes every client answers in, and the aiohttp
client (`upstream_client: aiohttp`; the default is `proxy.http_client.NativeUpstream`).

Why aiohttp directly (before our own client): measured on this machine, a pass-through
proxy on stock httpx collapsed under concurrency (encode/httpx#3215), httpx with the httpx-aiohttp
transport reached about half of plain aiohttp's throughput; see README.md, "Upstream
client". The session is opened and closed in the Litestar lifespan.

Every provider, the built-in `mock` included, is reached through `UpstreamResponse`,
so the request path has one shape whatever answers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Literal, Protocol

import aiohttp
import msgspec
from aiohttp.payload import BytesPayload
from yarl import URL

__all__ = [
    "AiohttpUpstream",
    "UpstreamCall",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamResponse",
    "UpstreamTimeout",
]


# Provider endpoints whose parsed URL is kept (far more than any catalog names).
_MAX_URLS = 256


class UpstreamError(Exception):
    """The provider could not be reached or did not answer in time."""


class UpstreamConnectError(UpstreamError):
    """Connecting to the provider failed, or it dropped the connection (502)."""


class UpstreamTimeout(UpstreamError):
    """The provider did not answer within the configured timeout (504)."""


class UpstreamCall(msgspec.Struct, frozen=True, kw_only=True):
    """One request to send upstream; `api_key` is the provider credential, if any."""

    url: str
    body: bytes
    api_key: str | None
    # How the credential is sent: `Authorization: Bearer` (OpenAI) or `x-api-key`
    # (Anthropic's Messages API).
    auth: Literal["authorization", "x-api-key"] = "authorization"
    # Client headers that select the API's behaviour (e.g. `anthropic-version`).
    headers: tuple[tuple[str, str], ...] = ()


class UpstreamResponse(Protocol):
    """An upstream answer whose body is read whole or chunk by chunk, then closed."""

    status: int
    content_type: str

    async def read(self) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    async def close(self) -> None: ...


class UpstreamClient(Protocol):
    """What the gateway needs of an upstream client (`AiohttpUpstream` or
    `proxy.http_client.NativeUpstream`, chosen by `upstream_client` in the config)."""

    @property
    def responses_open(self) -> int: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, call: UpstreamCall) -> UpstreamResponse: ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse, on_close: _Counter) -> None:
        self._response = response
        self._on_close = on_close
        self._closed = False
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError as exc:
            raise UpstreamTimeout("the provider stopped answering") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError("the provider dropped the connection") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout("the provider stopped streaming") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError("the provider dropped the stream") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close.value -= 1
        if self._response.content.is_eof():
            self._response.release()  # fully read: the connection goes back to the pool
        else:
            self._response.close()  # cut short (client left, error): drop the connection


class _Counter:
    def __init__(self) -> None:
        self.value = 0


class AiohttpUpstream:
    """The shared client: pooled keep-alive connections, timeouts from the config."""

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._open = _Counter()
        # Parsed once per provider endpoint (a handful, from the config), not per call.
        self._urls: dict[str, URL] = {}

    @property
    def responses_open(self) -> int:
        """Upstream responses not yet closed: each one holds a pooled connection."""
        return self._open.value

    async def start(self) -> None:
        # The client's own per-request INFO logging cost ~30% throughput in the benchmark.
        logging.getLogger("aiohttp.client").setLevel(logging.WARNING)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
            # One session serves every tenant: a provider's cookies must never ride along
            # on another client's call (and not filtering a jar is cheaper per request).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """POST `call.body`; raises UpstreamConnectError / UpstreamTimeout."""
        if self._session is None:
            raise RuntimeError("the upstream client is not started (lifespan not run)")
        headers = {"Content-Type": "application/json", "Accept": "*/*", **dict(call.headers)}
        if call.api_key and call.auth == "x-api-key":
            headers["x-api-key"] = call.api_key
        elif call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        url = self._urls.get(call.url)
        if url is None:
            if len(self._urls) >= _MAX_URLS:  # catalog reloads may retire endpoints
                self._urls.clear()
            url = self._urls[call.url] = URL(call.url)
        # A ready payload: what aiohttp's payload registry would make of the bytes.
        body = BytesPayload(call.body, content_type="application/json")
        try:
            response = await self._session.post(url, data=body, headers=headers)
        except TimeoutError as exc:
            raise UpstreamTimeout("the provider did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError("the provider could not be reached") from exc
        self._open.value += 1
        return _AiohttpResponse(response, self._open)
