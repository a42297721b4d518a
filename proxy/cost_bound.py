"""An upper bound of a request's cost that no provider in the catalog can exceed.

The gateway reserves this bound before forwarding (contract §6, "Admission"), so it
must hold for every billed dimension:

- prompt tokens: every tokenizer of the catalog's providers is a byte-level BPE (or
  coarser), and such a tokenizer never yields more tokens than the UTF-8 bytes of the
  text it reads. The bound is therefore the UTF-8 bytes of the text the provider
  tokenizes, plus a fixed allowance per message (role and separators the chat
  template adds) and per request (the reply's priming). Token-id arrays count one
  token per id. Tool and function definitions and `response_format` count the bytes
  of their JSON text (their keys are tokenized too).
- image parts: `image_input_tokens` of the provider's catalog entry per image (the
  most any image can cost there); without that field the request is refused with a
  400 naming it: the gateway never guesses low.
- other non-text parts (audio, files) cannot be bounded: refused with a 400.
- completion tokens: `max_tokens` or `max_completion_tokens` (the larger when both
  are given), else the catalog's `max_output_tokens` for the offer, else the
  configured `default_max_tokens`, which is then forwarded to the provider so that
  it cannot generate past the bound; times `n` and `best_of` (the provider bills
  every candidate), times the number of prompts of a batched completions request.
- embeddings: every input of the array, with a per-input allowance; no completion.

Cost bound = prompt bound x input price + completion bound x output price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from proxy.catalog import ModelPrice
from proxy.documents import Operation

__all__ = [
    "MESSAGE_ALLOWANCE",
    "REQUEST_ALLOWANCE",
    "TOOL_ALLOWANCE",
    "CostBound",
    "Unbounded",
    "cost_bound",
]

# Tokens a chat template may add around one message (role, start/end markers, name).
MESSAGE_ALLOWANCE = 16
# Tokens added once per request (the assistant reply's priming, a BOS/EOS pair).
REQUEST_ALLOWANCE = 16
# Tokens a provider may add around one tool or function definition it renders.
TOOL_ALLOWANCE = 32

_encoder = msgspec.json.Encoder()
# Chat fields, besides `messages`, whose text the provider renders into the prompt.
_RENDERED_FIELDS = ("tools", "functions", "response_format", "tool_choice", "function_call")


class Unbounded(Exception):
    """Part of the request cannot be bounded; the message names it and how to fix it."""


class CostBound(msgspec.Struct, frozen=True, kw_only=True):
    """The most a request may cost, and what bounds it."""

    prompt_tokens: int
    completion_tokens: int
    amount: Decimal
    # Set when the request named no completion limit: forward this one upstream.
    default_max_tokens: int | None = None


def cost_bound(
    operation: Operation,
    payload: Mapping[str, Any],
    price: ModelPrice,
    default_max_tokens: int,
) -> CostBound:
    """The bound of `payload` (a decoded, type-checked body) served by the offer `price`."""
    if operation == "embeddings":
        prompt = _inputs_bound(payload.get("input"))
        return _bound(price, prompt, 0, None)
    if operation == "chat.completions":
        prompt, prompts = _chat_bound(payload, price), 1
    else:
        prompt, prompts = _completions_bound(payload)
    asked = _asked_max_tokens(payload)
    default = None
    if asked is None:
        default = price.max_output_tokens or default_max_tokens
    per_choice = asked if asked is not None else default
    assert per_choice is not None
    choices = max(_count(payload.get("n")), _count(payload.get("best_of")))
    return _bound(price, prompt, per_choice * choices * prompts, default)


def _bound(price: ModelPrice, prompt: int, completion: int, default: int | None) -> CostBound:
    return CostBound(
        prompt_tokens=prompt,
        completion_tokens=completion,
        amount=price.cost(prompt, completion),
        default_max_tokens=default,
    )


def _asked_max_tokens(payload: Mapping[str, Any]) -> int | None:
    given = [
        value
        for value in (payload.get("max_tokens"), payload.get("max_completion_tokens"))
        if isinstance(value, int) and not isinstance(value, bool)
    ]
    return max(0, *given) if given else None


def _count(value: Any) -> int:
    """`n` / `best_of`: absent means 1 (the request parser has checked the range)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 1:
        return value
    return 1


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of every string in `value` (numbers count their decimal digits)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, list):
        return sum(_text_bytes(item) for item in value)
    if isinstance(value, dict):
        return sum(_text_bytes(item) for item in value.values())
    if isinstance(value, bool) or value is None:
        return 0
    return len(str(value))


def _chat_bound(payload: Mapping[str, Any], price: ModelPrice) -> int:
    messages = payload.get("messages")
    tokens = REQUEST_ALLOWANCE
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        tokens += MESSAGE_ALLOWANCE + _message_bound(message, index, price)
    for field in _RENDERED_FIELDS:
        value = payload.get(field)
        if value is not None:
            items = len(value) if isinstance(value, list) else 1
            tokens += len(_encoder.encode(value)) + TOOL_ALLOWANCE * items
    return tokens


def _message_bound(message: Any, index: int, price: ModelPrice) -> int:
    if not isinstance(message, dict):
        return _text_bytes(message)
    tokens = 0
    for field, value in message.items():
        if field == "content" and isinstance(value, list):
            tokens += sum(
                _part_bound(part, f"messages[{index}].content[{n}]", price)
                for n, part in enumerate(value)
            )
        else:
            tokens += len(field) + _text_bytes(value)
    return tokens


def _part_bound(part: Any, where: str, price: ModelPrice) -> int:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind is None or kind == "text":
        return _text_bytes(part)
    if kind == "image_url":
        if price.image_input_tokens is None:
            raise Unbounded(
                f"Invalid request body: field `{where}`: an image part cannot be bounded "
                f"for model `{price.model_id}`; set `image_input_tokens` for this provider "
                "in the catalog to accept images"
            )
        return price.image_input_tokens + _text_bytes(part.get("image_url", {}).get("detail"))
    raise Unbounded(
        f"Invalid request body: field `{where}`: a `{kind}` part cannot be bounded, so the "
        "gateway cannot hold its cost; send text or image parts only"
    )


def _completions_bound(payload: Mapping[str, Any]) -> tuple[int, int]:
    """(prompt bound, number of prompts): a list of prompts is a batch, each one
    generating its own `n` completions."""
    prompt = payload.get("prompt")
    prompts: Iterable[Any]
    if isinstance(prompt, list) and prompt and not _is_token_ids(prompt):
        prompts = prompt
    else:
        prompts = [prompt]
    items = list(prompts)
    suffix = _text_bytes(payload.get("suffix"))
    tokens = sum(_one_input(item) + REQUEST_ALLOWANCE + suffix for item in items)
    return tokens, max(len(items), 1)


def _inputs_bound(value: Any) -> int:
    """Every input of an embeddings request (a string, a token array, or a list of
    either), each with its allowance."""
    if isinstance(value, list) and value and not _is_token_ids(value):
        return sum(_one_input(item) + REQUEST_ALLOWANCE for item in value)
    return _one_input(value) + REQUEST_ALLOWANCE


def _one_input(value: Any) -> int:
    if isinstance(value, list) and _is_token_ids(value):
        return len(value)  # already tokens: one each
    return _text_bytes(value)


def _is_token_ids(value: list[Any]) -> bool:
    return all(isinstance(item, int) and not isinstance(item, bool) for item in value)
