"""The built-in `mock` provider: OpenAI-compatible answers made locally, no network.

It behaves as a real provider would, so what works against it works against one:
requests are validated first (`proxy.mock_validation`: unknown model, bad parameters,
`messages: []`), every answer has its own id and the current `created` time, `n`
gives that many choices and `max_tokens` cuts the reply (`finish_reason: length`).

Content and usage are deterministic so tests and the quickstart can check them: the
reply is `mock_reply(...)` (it quotes the start of the last user message), prompt
tokens are the whitespace-separated words of the prompt (at least 1) and completion
tokens are the words of the reply, per choice.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from proxy.documents import Operation
from proxy.mock_agent_apis import (
    count_tokens_answer,
    messages_answer,
    reply_quoting,
    responses_answer,
)
from proxy.mock_validation import validate

__all__ = ["MockProvider", "mock_reply", "prompt_tokens"]

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


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts, or a batch of prompts
        return " ".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        return _text_of(value.get("text"))
    return ""


def mock_reply(operation: Operation, payload: dict[str, Any]) -> str:
    """The mock's whole answer to a chat or completions request (before `max_tokens`):
    a fixed sentence quoting the first words of the last user message (or the prompt),
    so a test can tell which request an answer belongs to."""
    if operation == "chat.completions":
        messages = payload.get("messages")
        users = [m for m in messages or () if isinstance(m, dict) and m.get("role") == "user"]
        said = _text_of(users[-1].get("content")) if users else ""
    else:
        said = _text_of(payload.get("prompt"))
    return reply_quoting(said)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _MockResponse:
    def __init__(self, status: int = 200, body: bytes = b"", events: tuple[bytes, ...] = ()):
        self.status = status
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


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    """What every chunk or body of one answer shares."""

    id: str
    created: int
    model: str
    chat: bool
    words: tuple[str, ...]
    finish: str
    choices: int
    prompt: int

    def head(self, chunk: bool) -> dict[str, Any]:
        kind = "chat.completion.chunk" if chunk else "chat.completion"
        return {
            "id": self.id,
            "object": kind if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
        }

    def usage(self) -> dict[str, int]:
        return _usage(self.prompt, len(self.words) * self.choices)


_AGENT_ANSWERS = {
    "responses": responses_answer,
    "messages": messages_answer,
    "messages.count_tokens": count_tokens_answer,
}


class MockProvider:
    """Answers chat, completions, embeddings, Responses and Messages requests for the
    mock's own models."""

    async def send(self, operation: Operation, payload: dict[str, Any]) -> _MockResponse:
        if operation in ("responses", "messages", "messages.count_tokens"):
            agent = _AGENT_ANSWERS[operation](payload)
            return _MockResponse(status=agent.status, body=agent.body, events=agent.events)
        rejection = validate(operation, payload)
        if rejection is not None:
            return _MockResponse(status=rejection.status, body=rejection.body())
        model = str(payload["model"])
        prompt = prompt_tokens(operation, payload)
        if operation == "embeddings":
            return _MockResponse(body=_encoder.encode(_embeddings(model, payload, prompt)))
        answer = _answer(operation, payload, model, prompt)
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return _MockResponse(events=_stream(answer, include_usage))
        return _MockResponse(body=_encoder.encode(_completion(answer)))


def _answer(operation: Operation, payload: dict[str, Any], model: str, prompt: int) -> _Answer:
    chat = operation == "chat.completions"
    words = tuple(mock_reply(operation, payload).split(" "))
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and limit < len(words):
        words, finish = words[:limit], "length"
    return _Answer(
        id=f"{'chatcmpl' if chat else 'cmpl'}-mock-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=model,
        chat=chat,
        words=words,
        finish=finish,
        choices=payload.get("n") or 1,
        prompt=prompt,
    )


def _completion(answer: _Answer) -> dict[str, Any]:
    text = " ".join(answer.words)
    choices: list[dict[str, Any]] = []
    for index in range(answer.choices):
        if answer.chat:
            message = {"role": "assistant", "content": text, "refusal": None}
            choices.append({"index": index, "message": message, "finish_reason": answer.finish})
        else:
            choices.append(
                {"index": index, "text": text, "finish_reason": answer.finish, "logprobs": None}
            )
    return {**answer.head(chunk=False), "choices": choices, "usage": answer.usage()}


def _stream(answer: _Answer, include_usage: bool) -> tuple[bytes, ...]:
    head = answer.head(chunk=True)
    events: list[bytes] = []
    last = len(answer.words) - 1
    for position, word in enumerate(answer.words):
        text = word if position == 0 else " " + word
        finish = answer.finish if position == last else None
        choices: list[dict[str, Any]] = []
        for index in range(answer.choices):
            if answer.chat:
                delta: dict[str, Any] = {"content": text}
                if position == 0:
                    delta["role"] = "assistant"
                choices.append({"index": index, "delta": delta, "finish_reason": finish})
            else:
                choices.append(
                    {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
                )
        events.append(_event({**head, "choices": choices}))
    if include_usage:
        events.append(_event({**head, "choices": [], "usage": answer.usage()}))
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
