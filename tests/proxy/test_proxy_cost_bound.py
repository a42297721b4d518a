"""The reservation's upper bound (proxy/cost_bound.py), one test per billed dimension."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.catalog import ModelPrice
from proxy.cost_bound import (
    MESSAGE_ALLOWANCE,
    REQUEST_ALLOWANCE,
    TOOL_ALLOWANCE,
    Unbounded,
    cost_bound,
)

PRICE = ModelPrice(model_id="m", input_price=Decimal("1.00"), output_price=Decimal("2.00"))
DEFAULT = 4096


def _chat(content: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


def _completion(payload: dict[str, Any], price: ModelPrice = PRICE) -> int:
    return cost_bound("chat.completions", payload, price, DEFAULT).completion_tokens


def _prompt(payload: dict[str, Any], price: ModelPrice = PRICE) -> int:
    return cost_bound("chat.completions", payload, price, DEFAULT).prompt_tokens


def test_prompt_is_utf8_bytes_plus_allowances() -> None:
    # "user" and the field names count too: the template renders the role.
    fixed = REQUEST_ALLOWANCE + MESSAGE_ALLOWANCE + len("role") + len("user") + len("content")
    assert _prompt(_chat("hello")) == fixed + 5
    # One CJK character is 3 UTF-8 bytes: a provider counting one token per character
    # (the measurement) stays three times below the bound, never above it.
    assert _prompt(_chat("漢" * 3000)) == fixed + 9000


@given(st.text())
def test_prompt_bound_is_never_below_the_text_bytes(text: str) -> None:
    # Byte-level BPE never yields more tokens than bytes: the bound covers any such tokenizer.
    assert _prompt(_chat(text)) >= len(text.encode("utf-8")) + MESSAGE_ALLOWANCE


def test_every_message_gets_its_allowance() -> None:
    two = {"model": "m", "messages": [{"role": "user", "content": ""}] * 2}
    one = {"model": "m", "messages": [{"role": "user", "content": ""}]}
    assert _prompt(two) - _prompt(one) == MESSAGE_ALLOWANCE + len("roleusercontent")


def test_tools_count_their_json_text() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    extra = _prompt(_chat(tools=tools)) - _prompt(_chat())
    assert extra > len(str(tools)) // 2 and extra >= TOOL_ALLOWANCE


def test_max_tokens_and_max_completion_tokens_bound_the_completion() -> None:
    assert _completion(_chat(max_tokens=100)) == 100
    assert _completion(_chat(max_completion_tokens=300)) == 300
    # Both given: the larger (providers differ in which one they honour).
    assert _completion(_chat(max_tokens=100, max_completion_tokens=300)) == 300


def test_n_and_best_of_multiply_the_completion() -> None:
    assert _completion(_chat(max_tokens=100, n=8)) == 800
    assert _completion(_chat(max_tokens=100, n=128)) == 12_800
    completions = {"model": "m", "prompt": "x", "max_tokens": 10, "n": 2, "best_of": 5}
    assert cost_bound("completions", completions, PRICE, DEFAULT).completion_tokens == 50


def test_a_batch_of_prompts_multiplies_the_completion() -> None:
    batch = {"model": "m", "prompt": ["a", "bb", "ccc"], "max_tokens": 10, "n": 2}
    bound = cost_bound("completions", batch, PRICE, DEFAULT)
    assert bound.completion_tokens == 60
    assert bound.prompt_tokens == 6 + 3 * REQUEST_ALLOWANCE
    tokens = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 10}
    assert cost_bound("completions", tokens, PRICE, DEFAULT).prompt_tokens == (
        3 + REQUEST_ALLOWANCE
    )


def test_the_default_completion_is_the_catalogs_then_the_gateways() -> None:
    bound = cost_bound("chat.completions", _chat(), PRICE, DEFAULT)
    assert (bound.completion_tokens, bound.default_max_tokens) == (DEFAULT, DEFAULT)
    capped = ModelPrice(model_id="m", max_output_tokens=1000)
    bound = cost_bound("chat.completions", _chat(n=3), capped, DEFAULT)
    assert (bound.completion_tokens, bound.default_max_tokens) == (3000, 1000)
    # A request that names its own limit forwards nothing extra.
    assert (
        cost_bound("chat.completions", _chat(max_tokens=5), PRICE, DEFAULT).default_max_tokens
        is None
    )


def test_every_embeddings_input_counts() -> None:
    def bound(value: Any) -> int:
        payload = {"model": "m", "input": value}
        result = cost_bound("embeddings", payload, PRICE, DEFAULT)
        assert result.completion_tokens == 0 and result.default_max_tokens is None
        return result.prompt_tokens

    assert bound("abcd") == 4 + REQUEST_ALLOWANCE
    assert bound(["abcd"] * 100) == 100 * (4 + REQUEST_ALLOWANCE)
    assert bound([5, 6, 7]) == 3 + REQUEST_ALLOWANCE
    assert bound([[5, 6], [7]]) == 3 + 2 * REQUEST_ALLOWANCE


def test_image_parts_need_the_catalog_field() -> None:
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "x"}},
    ]
    with pytest.raises(Unbounded, match=r"`messages\[0\]\.content\[1\]`.*`image_input_tokens`"):
        _prompt(_chat(parts))
    priced = ModelPrice(model_id="m", input_price=Decimal(1), image_input_tokens=1000)
    text_only = _prompt(_chat(parts[:1]), priced)
    assert _prompt(_chat(parts), priced) == text_only + 1000


def test_parts_that_cannot_be_bounded_are_refused() -> None:
    audio = [{"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}]
    with pytest.raises(Unbounded, match="`input_audio` part cannot be bounded"):
        _prompt(_chat(audio))


def test_amount_prices_each_dimension() -> None:
    bound = cost_bound("chat.completions", _chat("x", max_tokens=10), PRICE, DEFAULT)
    expected = (bound.prompt_tokens * Decimal(1) + 10 * Decimal(2)) / Decimal(1_000_000)
    assert bound.amount == expected
