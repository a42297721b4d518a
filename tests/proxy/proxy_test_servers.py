"""Real servers for end-to-end tests: the gateway under uvicorn and a local upstream.

Both run on 127.0.0.1 with a free port, each on its own thread and event loop, and
are stopped by the fixtures that start them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec
import uvicorn
from aiohttp import web
from litestar import Litestar

from proxy.config import GatewayConfig
from proxy.server import uvicorn_config

T = TypeVar("T")

UPSTREAM_PROMPT_TOKENS = 5
UPSTREAM_COMPLETION_TOKENS = 7


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LoopThread:
    """An event loop on a daemon thread, to run a server beside synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(_cancel_pending())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _cancel_pending() -> None:
    """Cancel what is still running (e.g. a handler told to hang) so nothing leaks."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class LocalAiohttpServer:
    """An aiohttp app on 127.0.0.1, on a free port, served from its own loop thread.

    Subclasses build their app in `_start` and hand it to `_listen`."""

    def __init__(self) -> None:
        self._thread = LoopThread()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self._thread.run(self._start())

    def stop(self) -> None:
        if self._runner is not None:
            self._thread.run(self._runner.cleanup())
        self._thread.stop()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _listen(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]


class UpstreamServer(LocalAiohttpServer):
    """A small OpenAI-compatible provider (aiohttp) whose behaviour the last message picks:

    - `hang`: never answers (the gateway's read timeout must fire);
    - `fail`: answers 503 with an OpenAI error body (passed through);
    - `notjson`: answers 200 with a body that is not JSON;
    - `wait` with `stream: true`: sends two chunks, then waits for `release_stream()`;
    - `stall` with `stream: true`: sends the headers, then waits before any chunk;
    - `nousage` with `stream: true`: a whole stream that never reports its usage;
    - anything else: a normal answer with fixed usage (5 prompt, 7 completion tokens per
      choice: `n` choices bill `7 * n`, as a provider does).
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.active_streams = 0
        self.finished_streams = 0
        self._streaming: list[web.Request] = []
        self._hanging: list[web.Request] = []
        self._release: asyncio.Event | None = None

    @property
    def stream_clients_gone(self) -> bool:
        """True when every stream in progress has lost its client (the gateway)."""
        return all(r.transport is None or r.transport.is_closing() for r in self._streaming)

    @property
    def hanging_clients_gone(self) -> bool:
        """True when every request told to hang has lost its client (the gateway)."""
        return all(r.transport is None or r.transport.is_closing() for r in self._hanging)

    def release_stream(self) -> None:
        def release() -> None:
            if self._release is not None:
                self._release.set()

        self._thread.loop.call_soon_threadsafe(release)

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        await self._listen(app)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(
            {"path": request.path, "auth": request.headers.get("Authorization"), "body": body}
        )
        messages = body.get("messages") or [{"content": body.get("prompt", "")}]
        word = str(messages[-1].get("content", ""))
        if word == "hang":
            self._hanging.append(request)
            try:
                await asyncio.sleep(3600)
            finally:
                self._hanging.remove(request)
        if word == "fail":
            error = {"error": {"message": "upstream overloaded", "type": "server_error"}}
            return web.json_response(error, status=503)
        if word == "notjson":
            return web.Response(text="<html>gateway timeout</html>", content_type="text/html")
        completion = UPSTREAM_COMPLETION_TOKENS * int(body.get("n") or 1)
        usage = {
            "prompt_tokens": UPSTREAM_PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": UPSTREAM_PROMPT_TOKENS + completion,
        }
        if body.get("stream"):
            wait_at = {"wait": 2, "stall": 0}.get(word)
            if word == "nousage":
                body = {**body, "stream_options": {}}
            return await self._stream(request, body, usage, wait_at=wait_at)
        answer = {
            "id": "up-1",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "upstream says hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return web.json_response(answer)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        usage: dict[str, int],
        wait_at: int | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.active_streams += 1
        self._streaming.append(request)
        try:
            await self._write_stream(response, body, usage, wait_at)
            self.finished_streams += 1
        except ConnectionError:
            pass  # the gateway went away mid-stream: what the disconnect test expects
        finally:
            self.active_streams -= 1
            self._streaming.remove(request)
        return response

    async def _write_stream(
        self,
        response: web.StreamResponse,
        body: dict[str, Any],
        usage: dict[str, int],
        wait_at: int | None,
    ) -> None:
        base = {"id": "up-2", "object": "chat.completion.chunk", "model": body["model"]}
        for index, text in enumerate(("one", " two", " three")):
            if index == wait_at and self._release is not None:
                await self._release.wait()
                self._release.clear()
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            await response.write(_event({**base, "choices": [choice]}))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            await response.write(_event({**base, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(
            {"path": request.path, "auth": request.headers.get("Authorization"), "body": body}
        )
        answer = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "model": body["model"],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
        return web.json_response(answer)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


class GatewayServer:
    """The gateway app under uvicorn (asyncio loop, like production minus uvloop); with
    the gateway's `config`, the same uvicorn settings as `gateway serve` (connection
    deadlines, no proxy-header rewriting)."""

    def __init__(self, app: Litestar, config: GatewayConfig | None = None) -> None:
        self.app = app
        self.port = free_port()
        if config is None:
            config = GatewayConfig()
        config = msgspec.structs.replace(config, host="127.0.0.1", port=self.port)
        config = uvicorn_config(app, config, loop="asyncio", log_level="info")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
