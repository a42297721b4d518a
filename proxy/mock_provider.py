"""The built-in `mock` provider: OpenAI-compatible answers made locally, no network.

Usage is deterministic so tests and the quickstart can check the accounting: prompt
tokens are the number of whitespace-separated words in the prompt (at least 1) and
every completion is the same sentence of `len(MOCK_REPLY_WORDS)` tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from proxy.documents import Operation

__all__ = ["MOCK_REPLY", "MockProvider", "prompt_tokens"]

MOCK_REPLY = "This is a mock response from the gateway."
MOCK_REPLY_WORDS = tuple(MOCK_REPLY.split(" "))
_CREATED = 1_700_000_000  # fixed so answers are reproducible
_EMBEDDING_DIMENSIONS = 8
_encoder = msgspec.json.Encoder()


def _count_words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(item) for item in value)
    if isinstance(value, dict):
        return _count_words(value.get("content")) + _count_words(value.get("text"))
    return 0


def prompt_tokens(operation: Operation, payload: dict[str, Any]) -> int:
    """The mock's prompt token count: words in messages / prompt / input, at least 1."""
    field = {"chat.completions": "messages", "completions": "prompt"}.get(operation, "input")
    return max(1, _count_words(payload.get(field)))


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _MockResponse:
    def __init__(self, body: bytes = b"", events: tuple[bytes, ...] = ()) -> None:
        self.status = 200
        self.content_type = "text/event-stream" if events else "application/json"
        self._body = body
        self._events = events

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event
            await asyncio.sleep(0)  # let the server flush each chunk, like a real provider

    async def close(self) -> None:
        return None


class MockProvider:
    """Answers chat, completions and embeddings requests for any model id it is given."""

    async def send(self, operation: Operation, payload: dict[str, Any]) -> _MockResponse:
        model = str(payload.get("model", "mock-model"))
        prompt = prompt_tokens(operation, payload)
        if operation == "embeddings":
            return _MockResponse(body=_encoder.encode(_embeddings(model, payload, prompt)))
        chat = operation == "chat.completions"
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return _MockResponse(events=_stream(model, chat, prompt, include_usage))
        return _MockResponse(body=_encoder.encode(_completion(model, chat, prompt)))


def _completion(model: str, chat: bool, prompt: int) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": MOCK_REPLY},
            "finish_reason": "stop",
        }
    else:
        choice = {"index": 0, "text": MOCK_REPLY, "finish_reason": "stop", "logprobs": None}
    return {
        "id": "mock-cmpl-1" if not chat else "mock-chatcmpl-1",
        "object": "chat.completion" if chat else "text_completion",
        "created": _CREATED,
        "model": model,
        "choices": [choice],
        "usage": _usage(prompt, len(MOCK_REPLY_WORDS)),
    }


def _stream(model: str, chat: bool, prompt: int, include_usage: bool) -> tuple[bytes, ...]:
    base: dict[str, Any] = {
        "id": "mock-chatcmpl-1" if chat else "mock-cmpl-1",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": _CREATED,
        "model": model,
    }
    events: list[bytes] = []
    last = len(MOCK_REPLY_WORDS) - 1
    for index, word in enumerate(MOCK_REPLY_WORDS):
        text = word if index == 0 else " " + word
        finish = "stop" if index == last else None
        if chat:
            delta: dict[str, Any] = {"content": text}
            if index == 0:
                delta["role"] = "assistant"
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        events.append(_event({**base, "choices": [choice]}))
    if include_usage:
        events.append(
            _event({**base, "choices": [], "usage": _usage(prompt, len(MOCK_REPLY_WORDS))})
        )
    events.append(b"data: [DONE]\n\n")
    return tuple(events)


def _embeddings(model: str, payload: dict[str, Any], prompt: int) -> dict[str, Any]:
    raw = payload.get("input")
    inputs = raw if isinstance(raw, list) else [raw]
    data = []
    for index, item in enumerate(inputs):
        digest = hashlib.sha256(str(item).encode("utf-8")).digest()
        vector = [round(byte / 255, 6) for byte in digest[:_EMBEDDING_DIMENSIONS]]
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"
