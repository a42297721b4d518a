"""The token usage a provider reports, read from each API family's own shape.

Settlement prices exactly what the provider billed, so every billed kind of prompt
token is kept apart: tokens read from or written to the provider's prompt cache are
priced differently from plain input tokens (`ModelPrice.cost`).

- Chat / completions / embeddings: `usage.prompt_tokens` (cache reads included, as
  `prompt_tokens_details.cached_tokens`), `usage.completion_tokens`.
- Responses: `usage.input_tokens` (cache reads included, as
  `input_tokens_details.cached_tokens`), `usage.output_tokens`.
- Messages (Anthropic): `usage.input_tokens` counts only uncached input; cache reads
  (`cache_read_input_tokens`) and writes (`cache_creation_input_tokens`, split by
  `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`) come on
  top. A stream reports them in `message_start` and the final `output_tokens` (and,
  from some providers, updated input figures) in `message_delta`.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["TokenUsage", "chat_usage", "messages_usage", "responses_usage", "uncached_tokens"]


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens billed for one request. `prompt_tokens` counts every prompt token, the
    cached ones included; the cache fields say how many of them were cache reads and
    cache writes (5-minute and 1-hour), which are priced apart."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0


def _count(value: Any) -> int:
    # `type(...) is int`: a JSON decoder gives no int subclass but bool, which is no count.
    return value if type(value) is int and value > 0 else 0


def _detail(usage: dict[str, Any], field: str, name: str) -> int:
    details = usage.get(field)
    return _count(details.get(name)) if isinstance(details, dict) else 0


def chat_usage(value: Any) -> TokenUsage | None:
    """An OpenAI chat / completions / embeddings `usage` object; None when absent."""
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    if not isinstance(prompt, int):
        return None
    prompt = _count(prompt)
    # Read at every whole answer's settlement: the detail, mostly absent, looked up inline.
    details = value.get("prompt_tokens_details")
    cached = min(_count(details.get("cached_tokens")), prompt) if isinstance(details, dict) else 0
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=_count(value.get("completion_tokens")),
        cache_read_tokens=cached,
    )


def responses_usage(value: Any) -> TokenUsage | None:
    """An OpenAI Responses `usage` object; None when absent (e.g. `usage: null`)."""
    if not isinstance(value, dict) or not isinstance(value.get("input_tokens"), int):
        return None
    prompt = _count(value.get("input_tokens"))
    cached = min(_detail(value, "input_tokens_details", "cached_tokens"), prompt)
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=_count(value.get("output_tokens")),
        cache_read_tokens=cached,
    )


def messages_usage(value: Any, earlier: TokenUsage | None = None) -> TokenUsage | None:
    """An Anthropic `usage` object, laid over what an earlier event of the same stream
    reported (a field absent here keeps its earlier value); None when absent."""
    if not isinstance(value, dict):
        return earlier
    base = earlier or TokenUsage()
    uncached = _field(value, "input_tokens", uncached_tokens(base))
    read = _field(value, "cache_read_input_tokens", base.cache_read_tokens)
    written = _field(
        value, "cache_creation_input_tokens", base.cache_write_tokens + base.cache_write_1h_tokens
    )
    one_hour = base.cache_write_1h_tokens
    split = value.get("cache_creation")
    if isinstance(split, dict) and "ephemeral_1h_input_tokens" in split:
        one_hour = min(_count(split.get("ephemeral_1h_input_tokens")), written)
    return TokenUsage(
        prompt_tokens=uncached + read + written,
        completion_tokens=_field(value, "output_tokens", base.completion_tokens),
        cache_read_tokens=read,
        cache_write_tokens=written - one_hour,
        cache_write_1h_tokens=one_hour,
    )


def uncached_tokens(usage: TokenUsage) -> int:
    """The prompt tokens neither read from nor written to the cache."""
    cached = usage.cache_read_tokens + usage.cache_write_tokens + usage.cache_write_1h_tokens
    return max(usage.prompt_tokens - cached, 0)


def _field(value: dict[str, Any], name: str, default: int) -> int:
    return _count(value[name]) if name in value and value[name] is not None else default
