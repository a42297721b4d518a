"""A fake provider speaking the OpenAI Responses API and the Anthropic Messages API.

Every answer has the same fixed usage, with prompt-cache figures, so the tests can
check what the gateway charges to the catalog's prices:

- Responses: 50 input tokens of which 20 cached, 7 output tokens.
- Messages: 5 uncached input tokens, 20 cache-read, 10 cache-written (6 to the
  5-minute cache, 4 to the 1-hour cache), 7 output tokens.

A user message `fail` gets the provider's own 529 `overloaded_error` (passed through);
`cut`, streamed, gets two events and then a dropped connection.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from proxy_test_servers import LocalAiohttpServer

__all__ = ["MESSAGES_USAGE", "RESPONSES_USAGE", "UPSTREAM_TEXT", "AgentApiUpstream"]

UPSTREAM_TEXT = "upstream says hi"
RESPONSES_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 20},
    "output_tokens": 7,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 57,
}
MESSAGES_USAGE = {
    "input_tokens": 5,
    "cache_read_input_tokens": 20,
    "cache_creation_input_tokens": 10,
    "cache_creation": {"ephemeral_5m_input_tokens": 6, "ephemeral_1h_input_tokens": 4},
    "output_tokens": 7,
}
_HEADERS = ("authorization", "x-api-key", "anthropic-version", "anthropic-beta")


class AgentApiUpstream(LocalAiohttpServer):
    """Serves `/v1/responses`, `/v1/messages` and `/v1/messages/count_tokens` (always 42
    tokens); `requests` records what arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        await self._listen(app)

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        headers = {name: request.headers.get(name) for name in _HEADERS}
        self.requests.append({"path": request.path, "headers": headers, "body": body})
        return body

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        part = {"type": "output_text", "text": UPSTREAM_TEXT, "annotations": []}
        item = {
            "id": "msg_up",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        done = _response(body, "completed", [item], RESPONSES_USAGE)
        if not body.get("stream"):
            return web.json_response(done)
        at = {"item_id": "msg_up", "output_index": 0, "content_index": 0}
        events = [
            ("response.created", {"response": _response(body, "in_progress", [], None)}),
            ("response.output_item.added", {"output_index": 0, "item": {**item, "content": []}}),
            ("response.content_part.added", {**at, "part": {**part, "text": ""}}),
            *(
                ("response.output_text.delta", {**at, "delta": word})
                for word in ("upstream", " says", " hi")
            ),
            ("response.output_text.done", {**at, "text": UPSTREAM_TEXT}),
            ("response.content_part.done", {**at, "part": part}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": done}),
        ]
        numbered = [
            (kind, {"type": kind, "sequence_number": n, **fields})
            for n, (kind, fields) in enumerate(events)
        ]
        return await _stream(request, numbered)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if body["messages"][-1].get("content") == "fail":
            error = {"type": "overloaded_error", "message": "Overloaded"}
            return web.json_response({"type": "error", "error": error}, status=529)
        message = {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": UPSTREAM_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": MESSAGES_USAGE,
        }
        if not body.get("stream"):
            return web.json_response(message)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**MESSAGES_USAGE, "output_tokens": 1},
        }
        events = [
            ("message_start", {"message": start}),
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            *(
                ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
                for w in ("upstream", " says", " hi")
            ),
            ("content_block_stop", {"index": 0}),
            (
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                },
            ),
            ("message_stop", {}),
        ]
        numbered = [(kind, {"type": kind, **f}) for kind, f in events]
        if body["messages"][-1].get("content") == "cut":
            return await _stream(request, numbered[:3], cut=True)
        return await _stream(request, numbered)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"input_tokens": 42})


def _response(
    body: dict[str, Any], status: str, output: list[Any], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": "resp_up",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


async def _stream(
    request: web.Request, events: list[tuple[str, dict[str, Any]]], cut: bool = False
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for kind, payload in events:
        await response.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())
    if cut and request.transport is not None:
        request.transport.close()  # the provider goes away mid-stream
        return response
    await response.write_eof()
    return response
