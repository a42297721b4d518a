"""The built-in mock refuses what a real provider refuses and answers like one."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from proxy.documents import Operation
from proxy.mock_provider import MockProvider, mock_reply


def _send(operation: Operation, payload: dict[str, Any]) -> tuple[int, Any]:
    async def run() -> tuple[int, bytes]:
        response = await MockProvider().send(operation, payload)
        return response.status, await response.read()

    status, body = asyncio.run(run())
    return status, json.loads(body)


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(
    ("operation", "payload", "status", "param", "code"),
    [
        ("chat.completions", _chat(messages=[]), 400, "messages", "empty_array"),
        ("chat.completions", _chat(model="gpt-9"), 404, "model", "model_not_found"),
        ("chat.completions", _chat(model="mock-embedding"), 404, "model", "model_not_found"),
        ("chat.completions", _chat(n=0), 400, "n", "integer_below_min_value"),
        ("chat.completions", _chat(max_tokens="5"), 400, "max_tokens", "type"),
        ("chat.completions", _chat(temperature=3), 400, "temperature", "decimal_out_of_range"),
        (
            "chat.completions",
            _chat(messages=[{"role": "robot", "content": "x"}]),
            400,
            "messages[0].role",
            "invalid_value",
        ),
        ("completions", {"model": "mock-model", "prompt": ""}, 400, "prompt", "empty_array"),
        ("embeddings", {"model": "mock-model", "input": "x"}, 400, "model", None),
    ],
)
def test_the_mock_refuses_like_a_provider(
    operation: Operation, payload: dict[str, Any], status: int, param: str, code: str | None
) -> None:
    got_status, body = _send(operation, payload)
    assert got_status == status
    error = body["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]


def test_the_mock_answers_n_choices_cut_at_max_tokens_with_fresh_ids() -> None:
    before = int(time.time())
    status, first = _send("chat.completions", _chat(n=2, max_tokens=3))
    _, second = _send("chat.completions", _chat())
    assert status == 200
    assert first["id"] != second["id"] and first["id"].startswith("chatcmpl-mock-")
    assert first["created"] >= before
    assert [c["index"] for c in first["choices"]] == [0, 1]
    assert {c["finish_reason"] for c in first["choices"]} == {"length"}
    assert first["choices"][0]["message"]["content"] == "This is a"
    assert first["usage"]["completion_tokens"] == 6  # 3 tokens, 2 choices
    reply = mock_reply("chat.completions", _chat())
    assert second["choices"][0]["message"]["content"] == reply
    assert reply == "This is a mock response from the gateway. You said: hi"
    assert second["choices"][0]["finish_reason"] == "stop"


def test_the_mock_embeds_with_its_embedding_model() -> None:
    status, body = _send("embeddings", {"model": "mock-embedding", "input": ["a b", "c"]})
    assert status == 200
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
