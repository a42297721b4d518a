"""The reservation's bound and the settlement for the Responses and Messages APIs
(proxy/cost_bound.py, proxy/usage.py, ModelPrice.usage_cost), beside the chat ones."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.catalog import ModelPrice
from proxy.cost_bound import (
    BUILTIN_TOOL_ALLOWANCE,
    MESSAGE_ALLOWANCE,
    REQUEST_ALLOWANCE,
    Unbounded,
    cost_bound,
)
from proxy.sse import SseRelay, messages_stream_usage
from proxy.usage import TokenUsage, messages_usage, responses_usage

CLAUDE = ModelPrice(
    model_id="claude",
    input_price=Decimal("3.00"),
    output_price=Decimal("15.00"),
    cache_read_price=Decimal("0.30"),
    cache_write_price=Decimal("3.75"),
    cache_write_1h_price=Decimal("6.00"),
)
DEFAULT = 4096


def _messages(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


@given(st.text(), st.text())
def test_every_prompt_text_is_counted_at_least_by_its_bytes(system: str, text: str) -> None:
    floor = len(system.encode()) + len(text.encode()) + 2 * MESSAGE_ALLOWANCE + REQUEST_ALLOWANCE
    assert (
        cost_bound("messages", _messages(text, system=system), CLAUDE, DEFAULT).prompt_tokens
        >= floor
    )
    responses = {"model": "m", "instructions": system, "input": [{"role": "user", "content": text}]}
    assert cost_bound("responses", responses, CLAUDE, DEFAULT).prompt_tokens >= floor


def test_completion_limits_and_the_forwarded_default() -> None:
    bound = cost_bound("messages", _messages("hi"), CLAUDE, DEFAULT)
    assert (bound.completion_tokens, bound.default_max_tokens) == (100, None)
    asked = cost_bound(
        "responses", {"model": "m", "input": "hi", "max_output_tokens": 7}, CLAUDE, DEFAULT
    )
    assert (asked.completion_tokens, asked.default_max_tokens) == (7, None)
    unset = cost_bound("responses", {"model": "m", "input": "hi"}, CLAUDE, DEFAULT)
    assert (unset.completion_tokens, unset.default_max_tokens) == (DEFAULT, DEFAULT)


def test_the_prompt_is_priced_at_the_dearest_cache_write() -> None:
    bound = cost_bound("messages", _messages("hi"), CLAUDE, DEFAULT)
    assert bound.amount == (bound.prompt_tokens * Decimal("6.00") + 100 * Decimal("15.00")) / 10**6


def test_provider_defined_tools_carry_their_hidden_definitions() -> None:
    plain = cost_bound("messages", _messages("hi"), CLAUDE, DEFAULT).prompt_tokens
    bash = cost_bound(
        "messages",
        _messages("hi", tools=[{"type": "bash_20250124", "name": "bash"}]),
        CLAUDE,
        DEFAULT,
    )
    assert bash.prompt_tokens >= plain + 2 * BUILTIN_TOOL_ALLOWANCE


@pytest.mark.parametrize(
    ("operation", "payload", "field"),
    [
        ("responses", {"input": "x", "conversation": "conv_1"}, "conversation"),
        ("responses", {"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        (
            "responses",
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            "messages",
            _messages("x", tools=[{"type": "web_search_20250305", "name": "w"}]),
            "tools[0]",
        ),
        (
            "messages",
            _messages([{"type": "image", "source": {"type": "base64", "data": "x"}}]),
            "messages[0].content[0]",
        ),
    ],
)
def test_what_has_no_bound_is_refused_naming_the_field(
    operation: Any, payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(Unbounded) as info:
        cost_bound(operation, {"model": "m", **payload}, CLAUDE, DEFAULT)
    assert f"field `{field}`" in str(info.value)


def test_images_cost_the_catalog_tokens_when_set() -> None:
    priced = ModelPrice(model_id="m", input_price=Decimal(1), image_input_tokens=1600)
    image = {"type": "image", "source": {"type": "base64", "data": "x" * 10}}
    with_image = cost_bound("messages", _messages([image]), priced, DEFAULT).prompt_tokens
    assert with_image >= 1600 + MESSAGE_ALLOWANCE


def test_usage_of_each_family_is_priced_kind_by_kind() -> None:
    anthropic = messages_usage(
        {
            "input_tokens": 5,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 10,
            "cache_creation": {"ephemeral_5m_input_tokens": 6, "ephemeral_1h_input_tokens": 4},
            "output_tokens": 7,
        }
    )
    assert anthropic == TokenUsage(
        prompt_tokens=35,
        completion_tokens=7,
        cache_read_tokens=20,
        cache_write_tokens=6,
        cache_write_1h_tokens=4,
    )
    expected = (
        5 * Decimal("3")
        + 20 * Decimal("0.30")
        + 6 * Decimal("3.75")
        + 4 * Decimal("6")
        + 7 * Decimal("15")
    )
    assert CLAUDE.usage_cost(anthropic) == expected / 10**6
    openai = responses_usage(
        {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 7}
    )
    assert openai == TokenUsage(prompt_tokens=50, completion_tokens=7, cache_read_tokens=20)
    assert responses_usage(None) is None


def test_a_messages_stream_merges_start_and_delta_usage() -> None:
    relay = SseRelay(keep_usage_chunk=True, reader=messages_stream_usage)
    usage = b'{"input_tokens":9,"cache_read_input_tokens":3,"output_tokens":1}'
    start = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":%s}}\n\n' % usage
    )
    relay.feed(start)
    assert relay.usage == TokenUsage(prompt_tokens=12, completion_tokens=1, cache_read_tokens=3)
    assert not relay.final
    delta = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":40}}\n\n'
    assert relay.feed(delta) == delta  # nothing is dropped on this API
    assert relay.usage == TokenUsage(prompt_tokens=12, completion_tokens=40, cache_read_tokens=3)
    assert relay.final
