"""The built-in `mock` provider's answers on the Responses and Messages APIs.

Shaped as OpenAI's and Anthropic's answers are (the official SDKs parse them, streams
included: `response.created` ... `response.completed`; `message_start` ...
`message_stop`), with the mock's deterministic content and usage: prompt tokens are
the whitespace-separated words of the instructions / system prompt and of the input
or messages (at least 1), completion tokens the words of the reply, which quotes the
last user message. The completion limit (`max_output_tokens`, `max_tokens`) cuts the
reply as a provider would (`status: incomplete`, `stop_reason: max_tokens`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from proxy.mock_validation import MOCK_CHAT_MODELS

__all__ = [
    "MockAnswer",
    "count_tokens_answer",
    "messages_answer",
    "reply_quoting",
    "responses_answer",
]

_REPLY = "This is a mock response from the gateway."
_QUOTED_WORDS = 12
_encoder = msgspec.json.Encoder()


class MockAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A whole body or a stream of events, with the HTTP status."""

    status: int = 200
    body: bytes = b""
    events: tuple[bytes, ...] = ()


class _Reply(msgspec.Struct, frozen=True, kw_only=True):
    words: tuple[str, ...]
    cut: bool  # the completion limit cut the reply
    prompt: int
    model: str

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _text_of(value: Any) -> str:
    """Every text a message, item or content part carries, joined by spaces."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text for text in (_text_of(item) for item in value) if text)
    if isinstance(value, dict):
        return " ".join(
            text for text in (_text_of(value.get(f)) for f in ("content", "text")) if text
        )
    return ""


def reply_quoting(said: str) -> str:
    """The mock's reply on every API: a fixed sentence quoting the first words of what
    the user said last, so a test can tell which request an answer belongs to."""
    words = said.split()
    if not words:
        return _REPLY
    quoted = " ".join(words[:_QUOTED_WORDS]) + (" …" if len(words) > _QUOTED_WORDS else "")
    return f"{_REPLY} You said: {quoted}"


def _reply(payload: dict[str, Any], preamble: Any, turns: Any, limit: Any) -> _Reply:
    items = turns if isinstance(turns, list) else [turns]
    users = [i for i in items if isinstance(i, str) or (isinstance(i, dict) and _is_user(i))]
    words = tuple(reply_quoting(_text_of(users[-1]) if users else "").split(" "))
    cut = isinstance(limit, int) and limit < len(words)
    if cut:
        words = words[:limit]
    prompt = len(_text_of(preamble).split()) + len(_text_of(turns).split())
    return _Reply(words=words, cut=cut, prompt=max(prompt, 1), model=str(payload["model"]))


def _is_user(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def _hex() -> str:
    return uuid.uuid4().hex[:24]


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(payload) + b"\n\n"


def _invalid(status: int, body: dict[str, Any]) -> MockAnswer:
    return MockAnswer(status=status, body=_encoder.encode(body))


# --- OpenAI Responses ------------------------------------------------------------------


def responses_answer(payload: dict[str, Any]) -> MockAnswer:
    """The answer to a `/v1/responses` request (already type-checked by the gateway)."""
    model = payload["model"]
    if model not in MOCK_CHAT_MODELS:
        error = {
            "message": f"The model `{model}` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
        return _invalid(404, {"error": error})
    turns = payload.get("input")
    if turns == [] or turns == "":
        error = {
            "message": "Invalid 'input': empty input.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "empty_input",
        }
        return _invalid(400, {"error": error})
    reply = _reply(payload, payload.get("instructions"), turns, payload.get("max_output_tokens"))
    response_id, message_id = f"resp_mock{_hex()}", f"msg_mock{_hex()}"
    text_part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
    message = {
        "id": message_id,
        "type": "message",
        "status": "incomplete" if reply.cut else "completed",
        "role": "assistant",
        "content": [text_part],
    }
    usage = {
        "input_tokens": reply.prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(reply.words),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt + len(reply.words),
    }
    done = _response(payload, response_id, reply.cut, [message], usage)
    if payload.get("stream") is not True:
        return MockAnswer(body=_encoder.encode(done))
    return MockAnswer(events=_responses_events(payload, done, message, reply))


def _response(
    payload: dict[str, Any],
    response_id: str,
    cut: bool,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    status = "in_progress" if usage is None else ("incomplete" if cut else "completed")
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut and usage else None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "model": payload["model"],
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": {},
        "usage": usage,
    }


def _responses_events(
    payload: dict[str, Any], done: dict[str, Any], message: dict[str, Any], reply: _Reply
) -> tuple[bytes, ...]:
    started = _response(payload, done["id"], reply.cut, [], None)
    at = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        (
            "response.output_item.added",
            {"output_index": 0, "item": {**message, "status": "in_progress", "content": []}},
        ),
        ("response.content_part.added", {**at, "part": empty_part}),
    ]
    for position, word in enumerate(reply.words):
        delta = word if position == 0 else " " + word
        steps.append(("response.output_text.delta", {**at, "delta": delta, "logprobs": []}))
    steps += [
        ("response.output_text.done", {**at, "text": reply.text, "logprobs": []}),
        ("response.content_part.done", {**at, "part": message["content"][0]}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        ("response.incomplete" if reply.cut else "response.completed", {"response": done}),
    ]
    return tuple(
        _sse(kind, {"type": kind, "sequence_number": number, **fields})
        for number, (kind, fields) in enumerate(steps)
    )


# --- Anthropic Messages ----------------------------------------------------------------


def messages_answer(payload: dict[str, Any]) -> MockAnswer:
    """The answer to a `/v1/messages` request (already type-checked by the gateway)."""
    if payload["model"] not in MOCK_CHAT_MODELS:
        error = {"type": "not_found_error", "message": f"model: {payload['model']}"}
        return _invalid(404, {"type": "error", "error": error})
    messages = payload.get("messages")
    if not messages:
        error = {
            "type": "invalid_request_error",
            "message": "messages: at least one message is required",
        }
        return _invalid(400, {"type": "error", "error": error})
    reply = _reply(payload, payload.get("system"), messages, payload.get("max_tokens"))
    stop = "max_tokens" if reply.cut else "end_turn"
    usage = {
        "input_tokens": reply.prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": len(reply.words),
    }
    message = {
        "id": f"msg_mock{_hex()}",
        "type": "message",
        "role": "assistant",
        "model": payload["model"],
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if payload.get("stream") is not True:
        return MockAnswer(body=_encoder.encode(message))
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 1},
    }
    steps: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {}),
    ]
    for position, word in enumerate(reply.words):
        delta = {"type": "text_delta", "text": word if position == 0 else " " + word}
        steps.append(("content_block_delta", {"index": 0, "delta": delta}))
    steps += [
        ("content_block_stop", {"index": 0}),
        (
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": len(reply.words)},
            },
        ),
        ("message_stop", {}),
    ]
    return MockAnswer(events=tuple(_sse(kind, {"type": kind, **fields}) for kind, fields in steps))


def count_tokens_answer(payload: dict[str, Any]) -> MockAnswer:
    """`/v1/messages/count_tokens`: the prompt tokens the same Messages request would use."""
    if payload["model"] not in MOCK_CHAT_MODELS:
        error = {"type": "not_found_error", "message": f"model: {payload['model']}"}
        return _invalid(404, {"type": "error", "error": error})
    words = len(_text_of(payload.get("system")).split()) + len(
        _text_of(payload.get("messages")).split()
    )
    return MockAnswer(body=_encoder.encode({"input_tokens": max(words, 1)}))
