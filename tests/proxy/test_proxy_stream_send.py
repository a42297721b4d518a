"""A stream is sent from the request's own task (`proxy.api_route._send_stream`) with
the messages Litestar's `ASGIStreamingResponse` sends for it, and stops once its client
has left, its cleanup run either way (the suite has no asyncio plugin: each test runs
its own loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from proxy.api_route import ClientWatches, _response, _send_stream
from proxy.gateway import Reply


class _Client:
    """An ASGI connection's `send` and `receive`: `receive` answers `http.disconnect`
    once the response is complete (as uvicorn's does) or once `leave` is called."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message["more_body"]:
            self._gone.set()

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self._gone.set()


def _reply(chunks: list[bytes], cleaned: list[str], pause: float = 0.0) -> Reply:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await asyncio.sleep(pause)
            yield chunk

    async def cleanup() -> None:
        cleaned.append("cleanup")

    return Reply(
        status=200,
        content_type="text/event-stream",
        stream=stream(),
        cleanup=cleanup,
        headers=(("x-request-note", "kept"),),
    )


def _sent(sender: Callable[[Reply, _Client], Any], chunks: list[bytes]) -> list[Any]:
    async def main() -> list[Any]:
        cleaned: list[str] = []
        client = _Client()
        await sender(_reply(chunks, cleaned), client)
        return [*client.sent, *cleaned]

    return asyncio.run(asyncio.wait_for(main(), 5))


def test_a_stream_is_sent_as_litestar_sends_it() -> None:
    chunks = [b"data: one\n\n", b"data: two\n\n"]

    async def ours(reply: Reply, client: _Client) -> None:
        assert reply.stream is not None
        await _send_stream(reply, reply.stream, client.receive, client.send, ClientWatches())

    async def litestars(reply: Reply, client: _Client) -> None:
        await _response(reply)({"type": "http"}, client.receive, client.send)  # type: ignore[arg-type]

    expected = _sent(litestars, chunks)
    assert expected[-1] == "cleanup"
    assert [m["type"] for m in expected[:-1]] == ["http.response.start"] + [
        "http.response.body"
    ] * 3
    assert _sent(ours, chunks) == expected


def test_a_stream_stops_once_its_client_has_left() -> None:
    async def main() -> tuple[list[bytes], list[str]]:
        cleaned: list[str] = []
        client = _Client()
        reply = _reply([b"data: %d\n\n" % n for n in range(100)], cleaned, pause=0.01)
        assert reply.stream is not None
        asyncio.get_running_loop().call_later(0.2, client.leave)
        await _send_stream(reply, reply.stream, client.receive, client.send, ClientWatches())
        bodies = [m["body"] for m in client.sent if m["type"] == "http.response.body"]
        return bodies, cleaned

    bodies, cleaned = asyncio.run(asyncio.wait_for(main(), 5))
    assert 0 < len(bodies) < 100  # cut, and no final empty body after the cut
    assert bodies[-1] != b""
    assert cleaned == ["cleanup"]
