"""What differs between the API families the gateway serves, per operation.

The request path (`proxy.gateway`) is one for every operation: authenticate, decide,
reserve, forward, settle. Only a few facts depend on the API family, and they live
here: where the provider reports usage, which body field caps completion tokens, how
an error looks in the middle of a stream, which client headers go upstream and how
the provider's credential is sent.

- OpenAI-compatible (`chat.completions`, `completions`, `embeddings`): `usage` with
  `prompt_tokens`; streams report it only when asked (`stream_options.include_usage`).
- OpenAI Responses (`responses`): `usage.input_tokens/output_tokens`, in the
  `response.completed` event when streamed; `Authorization: Bearer`.
- Anthropic Messages (`messages`): `usage` with cache reads and writes, in
  `message_start` and `message_delta` when streamed; `x-api-key` and
  `anthropic-version` (and `anthropic-beta`) headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from proxy.catalog import ModelPrice
from proxy.documents import Operation
from proxy.sse import (
    StreamTextReader,
    StreamUsageReader,
    chat_stream_text,
    chat_stream_usage,
    messages_stream_text,
    messages_stream_usage,
    responses_stream_text,
    responses_stream_usage,
)
from proxy.usage import TokenUsage, chat_usage, messages_usage, responses_usage

__all__ = [
    "ANTHROPIC_OPERATIONS",
    "ANTHROPIC_VERSION",
    "AuthHeader",
    "asks_stream_usage",
    "auth_header",
    "max_tokens_field",
    "stream_error_event",
    "stream_text_reader",
    "stream_usage_reader",
    "upstream_headers",
    "whole_usage",
]

AuthHeader = Literal["authorization", "x-api-key"]

# Sent upstream on the Messages API when the client names no version (Anthropic
# requires the header; this is the API's first stable version, which every model takes).
ANTHROPIC_VERSION = "2023-06-01"
# Client headers that select the Messages API's behaviour and so must reach the provider.
_ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")
# The operations of Anthropic's Messages API (its headers, credential and error shape).
ANTHROPIC_OPERATIONS: frozenset[Operation] = frozenset({"messages", "messages.count_tokens"})
_encoder = msgspec.json.Encoder()


def whole_usage(operation: Operation, value: Any) -> TokenUsage | None:
    """The usage of a whole (non-streamed) answer, from its `usage` member's value
    (None when absent); counting tokens is free."""
    if operation == "messages.count_tokens":
        return None
    if operation == "responses":
        return responses_usage(value)
    if operation == "messages":
        return messages_usage(value)
    return chat_usage(value)


def stream_usage_reader(operation: Operation) -> StreamUsageReader:
    if operation == "responses":
        return responses_stream_usage
    if operation == "messages":
        return messages_stream_usage
    return chat_stream_usage


def stream_text_reader(operation: Operation) -> StreamTextReader:
    if operation == "responses":
        return responses_stream_text
    if operation == "messages":
        return messages_stream_text
    return chat_stream_text


def asks_stream_usage(operation: Operation) -> bool:
    """Whether a stream reports usage only when asked (`stream_options.include_usage`);
    the Responses and Messages APIs always report it (and refuse the option)."""
    return operation in ("chat.completions", "completions")


def max_tokens_field(operation: Operation, price: ModelPrice) -> str:
    """The body field that carries the completion limit the gateway forwards."""
    if operation == "responses":
        return "max_output_tokens"
    if operation == "messages":
        return "max_tokens"
    return price.max_tokens_field


def auth_header(operation: Operation) -> AuthHeader:
    """How the provider's credential is sent: Anthropic's API takes `x-api-key`."""
    return "x-api-key" if operation in ANTHROPIC_OPERATIONS else "authorization"


def upstream_headers(
    operation: Operation, headers: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The client's headers that go upstream with the body (never its credentials)."""
    if operation not in ANTHROPIC_OPERATIONS:
        return ()
    kept = [(name, headers[name]) for name in _ANTHROPIC_HEADERS if headers.get(name)]
    if not any(name == "anthropic-version" for name, _ in kept):
        kept.insert(0, ("anthropic-version", ANTHROPIC_VERSION))
    return tuple(kept)


def stream_error_event(operation: Operation, message: str, events_sent: int) -> bytes:
    """The event that ends a stream the provider broke off, in the API's own shape."""
    if operation in ANTHROPIC_OPERATIONS:
        error = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + _encoder.encode(error) + b"\n\n"
    if operation == "responses":
        event = {
            "type": "error",
            "code": "server_error",
            "message": message,
            "param": None,
            "sequence_number": events_sent,
        }
        return b"event: error\ndata: " + _encoder.encode(event) + b"\n\n"
    error = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return b"data: " + _encoder.encode(error) + b"\n\n"
