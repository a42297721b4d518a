"""The one stream charging rule (README "Streams"): the provider's usage when it
reported one; else, once content was relayed, the prompt's bound plus one token per
UTF-8 byte of generated text relayed, capped by the reservation; nothing when the
stream ended before any content. Units per API, then through the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from proxy_deployment import Deployment
from proxy_helpers import auth, chat, make_tenant

from proxy.catalog import ModelPrice
from proxy.cost_bound import cost_bound
from proxy.sse import (
    SseRelay,
    chat_stream_text,
    messages_stream_text,
    responses_stream_text,
)

GPT4 = ModelPrice(model_id="gpt-4", input_price=Decimal(30), output_price=Decimal(60))


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def test_chat_text_counts_every_generated_field() -> None:
    chunk = {
        "id": "chatcmpl-a-long-id-that-is-not-generated-text",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "héllo"}},
            {"index": 1, "delta": {"reasoning_content": "hm"}},
            {
                "index": 2,
                "delta": {"tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}]},
            },
            {"index": 3, "text": "abc"},
        ],
    }
    assert chat_stream_text(chunk) == 6 + 2 + 1 + 7 + 3


def test_responses_and_messages_text() -> None:
    assert responses_stream_text({"type": "response.output_text.delta", "delta": "漢字"}) == 6
    assert responses_stream_text({"type": "response.created", "response": {}}) == 0
    delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}}
    assert messages_stream_text(delta) == 2
    assert messages_stream_text({"type": "message_start", "message": {"id": "msg_x"}}) == 0


def test_the_relay_counts_text_across_split_chunks() -> None:
    relay = SseRelay(keep_usage_chunk=False)
    data = _event({"choices": [{"delta": {"content": "one"}}]}) + _event(
        {"choices": [{"delta": {"content": " two"}}]}
    )
    out = relay.feed(data[:10]) + relay.feed(data[10:])
    assert out == data and relay.text_bytes == 7 and relay.usage is None


# -- through the real server ------------------------------------------------------


def _usage(deployment: Deployment, key_id: str) -> Decimal:
    usage: Decimal = deployment.admin(deployment.admin.store.get_key(key_id)).usage
    return usage


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"still not true after 10 s: {what}"
        time.sleep(0.01)


def _stream(deployment: Deployment, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{deployment.url}/v1/chat/completions",
        json=body,
        headers=auth(token, "bearer"),
        timeout=30,
    )


def test_a_stream_cut_after_content_is_charged_for_what_was_relayed(
    deployment: Deployment,
) -> None:
    tenant = make_tenant(deployment.admin)
    body = chat(content="wait", stream=True)
    response = _stream(deployment, tenant.token, body)  # the upstream stalls after 2 chunks
    assert response.status_code == 200 and "failed mid-stream" in response.text
    bound = cost_bound("chat.completions", body, GPT4, 4096)
    # "one" and " two" reached the client: 7 bytes, at most 7 tokens, plus the prompt.
    expected = GPT4.cost(bound.prompt_tokens, 7)
    _eventually(lambda: _usage(deployment, tenant.key.id) == expected, "the cut stream settled")
    deployment.upstream.release_stream()
    _eventually(lambda: deployment.upstream.active_streams == 0, "the upstream stream ended")


def test_a_stream_failing_before_any_content_costs_nothing(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    response = _stream(deployment, tenant.token, chat(content="stall", stream=True))
    assert response.status_code == 200 and "failed mid-stream" in response.text
    deployment.upstream.release_stream()
    _eventually(lambda: deployment.upstream.active_streams == 0, "the upstream stream ended")
    assert _usage(deployment, tenant.key.id) == 0


def test_a_whole_stream_without_usage_is_charged_by_the_same_rule(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    body = chat(content="nousage", stream=True)
    response = _stream(deployment, tenant.token, body)
    assert response.status_code == 200 and "[DONE]" in response.text
    bound = cost_bound("chat.completions", body, GPT4, 4096)
    expected = GPT4.cost(bound.prompt_tokens, len("one two three"))
    _eventually(lambda: _usage(deployment, tenant.key.id) == expected, "the stream settled")


def test_a_stream_with_usage_is_charged_the_providers_figures(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    response = _stream(deployment, tenant.token, chat(content="hi", stream=True))
    assert response.status_code == 200
    _eventually(lambda: _usage(deployment, tenant.key.id) == GPT4.cost(5, 7), "settled")


def test_the_estimate_never_passes_the_reservation(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    # max_tokens 1 reserves one completion token; seven bytes were relayed.
    body = chat(content="wait", stream=True, max_tokens=1)
    _stream(deployment, tenant.token, body)
    bound = cost_bound("chat.completions", body, GPT4, 4096)
    _eventually(lambda: _usage(deployment, tenant.key.id) == bound.amount, "capped at the bound")
    deployment.upstream.release_stream()
    _eventually(lambda: deployment.upstream.active_streams == 0, "the upstream stream ended")
