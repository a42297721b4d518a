"""The mock upstream answers like an OpenAI-compatible provider, streams included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bench.mock_upstream import (
    COMPLETION_TOKENS,
    STREAM_CHUNKS,
    MockUpstream,
    Mode,
    start_mock_upstream,
)

Check = Callable[[MockUpstream, aiohttp.ClientSession], Awaitable[None]]


def run_against_mock(mode: Mode, check: Check) -> None:
    async def scenario() -> None:
        upstream = await start_mock_upstream("127.0.0.1", 0, mode)
        try:
            async with aiohttp.ClientSession() as session:
                await check(upstream, session)
        finally:
            await upstream.close()

    asyncio.run(scenario())


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "one two three"}]}


def sse_events(raw: bytes) -> list[str]:
    return [
        line[len("data: ") :] for line in raw.decode().split("\n\n") if line.startswith("data: ")
    ]


def test_chat_completion_has_deterministic_usage() -> None:
    async def check(upstream: MockUpstream, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{upstream.base_url}/chat/completions", json=CHAT) as response:
            assert response.status == 200
            body = await response.json()
        assert body["object"] == "chat.completion"
        assert body["model"] == "gpt-4o"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": 3 + COMPLETION_TOKENS,
        }

    run_against_mock("instant", check)


def test_completions_embeddings_and_models() -> None:
    async def check(upstream: MockUpstream, session: aiohttp.ClientSession) -> None:
        completion = {"model": "gpt-4o", "prompt": "a b"}
        async with session.post(f"{upstream.base_url}/completions", json=completion) as response:
            body = await response.json()
        assert body["object"] == "text_completion"
        assert body["usage"]["prompt_tokens"] == 2
        embedding = {"model": "text-embedding-3-small", "input": ["a", "b c"]}
        async with session.post(f"{upstream.base_url}/embeddings", json=embedding) as response:
            body = await response.json()
        assert [item["index"] for item in body["data"]] == [0, 1]
        assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
        async with session.get(f"{upstream.base_url}/models") as response:
            body = await response.json()
        assert "mock-model" in [model["id"] for model in body["data"]]

    run_against_mock("instant", check)


@pytest.mark.parametrize("mode", ["instant", "paced"])
def test_stream_sends_every_chunk_then_usage_then_done(mode: Mode) -> None:
    async def check(upstream: MockUpstream, session: aiohttp.ClientSession) -> None:
        request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        async with session.post(f"{upstream.base_url}/chat/completions", json=request) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            http_chunks = 0
            raw = b""
            async for data, end_of_chunk in response.content.iter_chunks():
                raw += data
                http_chunks += int(end_of_chunk)
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        chunks: list[dict[str, Any]] = [json.loads(event) for event in events[:-1]]
        content = [c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]]
        assert content == [f"tok{index} " for index in range(STREAM_CHUNKS)]
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == COMPLETION_TOKENS
        # each event is its own HTTP chunk, so a relay can forward them one by one
        assert http_chunks >= STREAM_CHUNKS

    run_against_mock(mode, check)


def test_stream_without_include_usage_has_no_usage_chunk() -> None:
    async def check(upstream: MockUpstream, session: aiohttp.ClientSession) -> None:
        request = {**CHAT, "stream": True}
        async with session.post(f"{upstream.base_url}/chat/completions", json=request) as response:
            events = sse_events(await response.read())
        assert len(events) == STREAM_CHUNKS + 1
        assert all("usage" not in json.loads(event) for event in events[:-1])

    run_against_mock("paced", check)


def test_errors_for_unknown_route_and_bad_json() -> None:
    async def check(upstream: MockUpstream, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{upstream.base_url}/nope", json=CHAT) as response:
            assert response.status == 404
        url = f"{upstream.base_url}/chat/completions"
        async with session.post(url, data=b"{not json") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]["message"]
        # the connection is still usable after an error
        async with session.post(url, json=CHAT) as response:
            assert response.status == 200

    run_against_mock("instant", check)
