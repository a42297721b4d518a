"""bench.raw_asgi_proxy, the frameworkless floor, relays plain answers and SSE streams."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from bench.loadgen import chat_body
from bench.mock_upstream import start_mock_upstream
from bench.raw_asgi_proxy import RawAsgiProxy


async def _call(app: RawAsgiProxy, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


class _Lifespan:
    """Drives the app's lifespan like a server: one message at a time, waiting for each
    answer."""

    def __init__(self, app: RawAsgiProxy) -> None:
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[str] = asyncio.Queue()

        async def send(message: Any) -> None:
            await self._answers.put(message["type"])

        self._task = asyncio.ensure_future(app({"type": "lifespan"}, self._messages.get, send))

    async def phase(self, name: str) -> str:
        await self._messages.put({"type": f"lifespan.{name}"})
        return await self._answers.get()

    async def end(self) -> str:
        answer = await self.phase("shutdown")
        await self._task
        return answer


def test_plain_and_streamed_answers_pass_through_and_other_paths_are_404() -> None:
    async def scenario() -> None:
        upstream = await start_mock_upstream("127.0.0.1", 0, "instant")
        app = RawAsgiProxy(upstream.base_url)
        lifespan = _Lifespan(app)
        assert await lifespan.phase("startup") == "lifespan.startup.complete"
        try:
            scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
            plain = await _call(app, scope, chat_body(False))
            assert plain[0]["status"] == 200
            assert msgspec.json.decode(plain[1]["body"])["object"] == "chat.completion"
            streamed = await _call(app, scope, chat_body(True))
            assert streamed[0]["status"] == 200
            relayed = b"".join(m.get("body", b"") for m in streamed[1:])
            assert relayed.rstrip().endswith(b"data: [DONE]")
            assert streamed[-1] == {"type": "http.response.body", "body": b""}
            other = await _call(app, {**scope, "path": "/v1/models"}, b"")
            assert other[0]["status"] == 404
        finally:
            assert await lifespan.end() == "lifespan.shutdown.complete"
            await upstream.close()

    asyncio.run(scenario())
