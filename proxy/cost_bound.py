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
- responses (OpenAI Responses API): `instructions` and every `input` item count as
  messages; an item or part is bounded by the bytes of its JSON text (its keys are
  rendered too), images as above. Completion: `max_output_tokens`, else the offer's
  `max_output_tokens`, else `default_max_tokens`, forwarded as `max_output_tokens`.
- messages (Anthropic Messages API): `system` and every message likewise; completion:
  `max_tokens`, which that API requires (thinking budgets are part of it).
- tools of both: the JSON text of each definition plus its allowance; a provider-defined
  tool (e.g. Anthropic's `bash_20250124`, OpenAI's `local_shell`) also brings a
  definition the provider writes itself, and any tools a tool-use preamble: each gets
  `BUILTIN_TOOL_ALLOWANCE`. Tools the provider runs itself (web search, code execution,
  file search, MCP servers) read and bill content the gateway never sees, and state
  stored at the provider (`previous_response_id`, `conversation`, stored prompts, item
  references, uploaded files, PDFs and audio) has a size the gateway cannot know: such
  requests are refused with a 400 naming the field.

Cost bound = prompt bound x the highest prompt price of the offer (input, cache write)
+ completion bound x output price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from proxy.catalog import ModelPrice
from proxy.documents import Operation

__all__ = [
    "BUILTIN_TOOL_ALLOWANCE",
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
# Tokens of a definition or preamble the provider writes itself (Anthropic documents
# 245 to 735 tokens per built-in tool and ~350 for the tool-use system prompt).
BUILTIN_TOOL_ALLOWANCE = 1024

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
    if operation == "messages":
        return _bound(price, _messages_bound(payload, price), payload["max_tokens"], None)
    if operation == "messages.count_tokens":  # free at the provider
        return CostBound(prompt_tokens=0, completion_tokens=0, amount=Decimal(0))
    if operation == "responses":
        limit = payload.get("max_output_tokens")
        if isinstance(limit, int):
            return _bound(price, _responses_bound(payload, price), limit, None)
        fallback = price.max_output_tokens or default_max_tokens
        return _bound(price, _responses_bound(payload, price), fallback, fallback)
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
        amount=price.bound_cost(prompt, completion),
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


# --- Responses and Messages ---------------------------------------------------------

# Fields naming state kept at the provider, whose size the gateway cannot see.
_STORED_STATE = {
    "responses": ("previous_response_id", "conversation", "prompt"),
    "messages": ("mcp_servers", "container"),
}
# Part or item types that are images, and those whose cost has no byte bound.
_IMAGE_TYPES = frozenset({"image", "input_image", "computer_screenshot"})
_UNBOUNDED_TYPES = frozenset(
    {"input_file", "input_audio", "item_reference", "document", "container_upload", "file"}
)
# Tool types that are plain client-side definitions (the gateway sees all of them).
_PLAIN_TOOLS = frozenset({"function", "custom"})
# Tools the provider runs itself: what they read and cost is never seen here.
_PROVIDER_RUN_TOOLS = (
    "web_search",
    "web_fetch",
    "code_execution",
    "code_interpreter",
    "file_search",
    "mcp",
    "image_generation",
)


def _responses_bound(payload: Mapping[str, Any], price: ModelPrice) -> int:
    _refuse_stored_state(payload, "responses")
    tokens = REQUEST_ALLOWANCE + _tools_bound(payload.get("tools"))
    instructions = payload.get("instructions")
    if isinstance(instructions, str):
        tokens += MESSAGE_ALLOWANCE + len(instructions.encode("utf-8"))
    items = payload.get("input")
    if isinstance(items, str):
        return tokens + MESSAGE_ALLOWANCE + len(items.encode("utf-8"))
    for index, item in enumerate(items if isinstance(items, list) else ()):
        tokens += MESSAGE_ALLOWANCE + _block_bound(item, f"input[{index}]", price)
    return tokens + _rendered_bound(payload, ("text", "tool_choice"))


def _messages_bound(payload: Mapping[str, Any], price: ModelPrice) -> int:
    _refuse_stored_state(payload, "messages")
    tokens = REQUEST_ALLOWANCE + _tools_bound(payload.get("tools"))
    system = payload.get("system")
    if system is not None:
        tokens += MESSAGE_ALLOWANCE + _block_bound(system, "system", price)
    for index, message in enumerate(payload.get("messages") or ()):
        tokens += MESSAGE_ALLOWANCE + _block_bound(message, f"messages[{index}]", price)
    return tokens + _rendered_bound(payload, ("tool_choice",))


def _refuse_stored_state(payload: Mapping[str, Any], operation: str) -> None:
    for field in _STORED_STATE[operation]:
        if payload.get(field) is not None:
            raise Unbounded(
                f"Invalid request body: field `{field}`: it refers to state kept at the "
                "provider, whose size the gateway cannot see, so it cannot hold the "
                "request's cost; send the whole conversation instead"
            )


def _tools_bound(tools: Any) -> int:
    if not isinstance(tools, list):
        return 0
    tokens = BUILTIN_TOOL_ALLOWANCE if tools else 0  # the tool-use preamble
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith(_PROVIDER_RUN_TOOLS):
            raise Unbounded(
                f"Invalid request body: field `tools[{index}]`: a `{kind}` tool runs at the "
                "provider, which bills what it reads, so the gateway cannot hold its "
                "cost; define the tool as a function and run it yourself"
            )
        tokens += len(_encoder.encode(tool)) + TOOL_ALLOWANCE
        if kind is not None and kind not in _PLAIN_TOOLS:
            tokens += BUILTIN_TOOL_ALLOWANCE
    return tokens


def _rendered_bound(payload: Mapping[str, Any], fields: tuple[str, ...]) -> int:
    return sum(len(_encoder.encode(payload[f])) for f in fields if payload.get(f) is not None)


def _block_bound(value: Any, where: str, price: ModelPrice) -> int:
    """A message, item or content block: the bytes of its JSON text, with image parts
    at the catalog's price and unboundable parts refused. Strings count their UTF-8
    bytes, which the JSON text of a container always exceeds."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, list):
        return sum(_block_bound(item, f"{where}[{n}]", price) for n, item in enumerate(value))
    if not isinstance(value, dict):
        return len(_encoder.encode(value))
    kind = value.get("type")
    if kind in _IMAGE_TYPES:
        return _image_bound(where, price)
    if kind in _UNBOUNDED_TYPES and not _is_text_document(value):
        raise Unbounded(
            f"Invalid request body: field `{where}`: a `{kind}` part cannot be bounded, so "
            "the gateway cannot hold its cost; send its text instead"
        )
    tokens = 2  # the braces
    for field, item in value.items():
        if isinstance(item, (list, dict)):
            tokens += len(field) + 4 + _block_bound(item, f"{where}.{field}", price)
        else:
            tokens += len(field) + 4 + len(_encoder.encode(item))
    return tokens


def _is_text_document(block: dict[str, Any]) -> bool:
    """An Anthropic `document` whose source is plain text: bounded by its bytes."""
    source = block.get("source")
    return (
        block.get("type") == "document"
        and isinstance(source, dict)
        and source.get("type") in ("text", "content")
    )


def _image_bound(where: str, price: ModelPrice) -> int:
    if price.image_input_tokens is None:
        raise Unbounded(
            f"Invalid request body: field `{where}`: an image part cannot be bounded "
            f"for model `{price.model_id}`; set `image_input_tokens` for this provider "
            "in the catalog to accept images"
        )
    return price.image_input_tokens
