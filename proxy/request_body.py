"""Parsing a client's request body into the few facts the gateway needs.

The proxy never rejects a body by itself: a problem becomes `body_error` in the
input document and the policy decides where in the order of checks it answers
(contract §3, check 5). The decoded object is kept so it can be forwarded with
only the model id (and the stream usage option) changed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from proxy.documents import Operation
from proxy.json_shape import DEFAULT_MAX_DEPTH, nesting_problem, utf8_problem

__all__ = ["MAX_CHOICES", "MAX_EMBEDDING_INPUTS", "ParsedBody", "parse_body"]

# OpenAI's documented limit of inputs per embeddings request; more is refused here
# rather than forwarded to fail upstream after a reservation was made for it.
MAX_EMBEDDING_INPUTS = 2048
# OpenAI's range for `n`; `best_of` shares it. Both multiply the completion tokens the
# gateway reserves, so an unbounded value could not be held against a usage limit.
MAX_CHOICES = 128
_Choices = Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)]


class ParsedBody(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway read from a body; `error` is set when it is unusable."""

    payload: dict[str, Any] | None
    model: str | None = None
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = False
    error: str | None = None


class _StreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_usage: bool | None = None


class _ModelFields(msgspec.Struct, frozen=True, kw_only=True):
    """Fields whose type the gateway relies on; anything else passes through unchecked."""

    model: str
    stream: bool | None = None


class _CommonFields(_ModelFields, frozen=True, kw_only=True):
    """The OpenAI-compatible chat, completions and embeddings fields."""

    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: _Choices | None = None
    best_of: _Choices | None = None


class _ChatFields(_CommonFields, frozen=True, kw_only=True):
    messages: list[dict[str, Any]]


class _CompletionFields(_CommonFields, frozen=True, kw_only=True):
    prompt: str | list[Any]


class _EmbeddingFields(_CommonFields, frozen=True, kw_only=True):
    input: str | list[Any]


_Positive = Annotated[int, msgspec.Meta(ge=1)]


class _ResponsesFields(_ModelFields, frozen=True, kw_only=True):
    """OpenAI Responses API (`/v1/responses`)."""

    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: _Positive | None = None
    tools: list[dict[str, Any]] | None = None


class _MessagesFields(_ModelFields, frozen=True, kw_only=True):
    """Anthropic Messages API (`/v1/messages`): `max_tokens` is required there."""

    messages: list[dict[str, Any]]
    max_tokens: _Positive
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


class _CountTokensFields(_ModelFields, frozen=True, kw_only=True):
    """Anthropic's token counting (`/v1/messages/count_tokens`): a Messages request
    without `max_tokens`."""

    messages: list[dict[str, Any]]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


_FIELDS_BY_OPERATION: dict[Operation, type[_ModelFields]] = {
    "chat.completions": _ChatFields,
    "completions": _CompletionFields,
    "embeddings": _EmbeddingFields,
    "responses": _ResponsesFields,
    "messages": _MessagesFields,
    "messages.count_tokens": _CountTokensFields,
}

_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_decoder = msgspec.json.Decoder()


def parse_body(operation: Operation, body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> ParsedBody:
    """Decode and type-check `body` for `operation` (not `models.list`).

    Never raises: any bytes give either a usable body or one with `error` set."""
    problem = nesting_problem(body, max_depth)
    if problem is not None:
        return ParsedBody(payload=None, error=problem)
    try:
        payload = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        return ParsedBody(payload=None, error=f"Invalid request body: not valid JSON ({exc})")
    except UnicodeDecodeError:  # invalid UTF-8 inside a string
        return ParsedBody(payload=None, error=utf8_problem(body) or "Invalid request body")
    if not isinstance(payload, dict):
        return ParsedBody(payload=None, error="Invalid request body: expected a JSON object")
    model = payload.get("model")
    model = model if isinstance(model, str) else None
    try:
        fields = msgspec.convert(payload, _FIELDS_BY_OPERATION[operation])
    except msgspec.ValidationError as exc:
        return ParsedBody(payload=payload, model=model, error=_explain(exc))
    problem = _operation_problem(fields)
    if problem is not None:
        return ParsedBody(payload=payload, model=fields.model, error=problem)
    return ParsedBody(
        payload=payload,
        model=fields.model,
        max_tokens=_max_tokens(fields),
        stream=bool(fields.stream),
        include_usage=isinstance(fields, _CommonFields)
        and bool(fields.stream_options and fields.stream_options.include_usage),
    )


def _max_tokens(fields: _ModelFields) -> int | None:
    """The completion limit the client set, in its API's own field."""
    if isinstance(fields, _ResponsesFields):
        return fields.max_output_tokens
    if isinstance(fields, _MessagesFields):
        return fields.max_tokens
    if isinstance(fields, _CommonFields):
        limit = fields.max_tokens
        return limit if limit is not None else fields.max_completion_tokens
    return None  # counting tokens generates none


def _operation_problem(fields: _ModelFields) -> str | None:
    """What the API refuses although every field has the right type."""
    if isinstance(fields, _EmbeddingFields):
        if fields.stream:
            return (
                "Invalid request body: field `stream`: embeddings cannot be streamed; "
                "remove `stream` or set it to false"
            )
        if isinstance(fields.input, list) and len(fields.input) > MAX_EMBEDDING_INPUTS:
            return (
                f"Invalid request body: field `input`: at most {MAX_EMBEDDING_INPUTS} inputs "
                f"per request, got {len(fields.input)}; split the request"
            )
    return None


def _explain(exc: msgspec.ValidationError) -> str:
    """`Expected `str`, got `int` - at `$.model`` -> a sentence naming the field."""
    text = str(exc)
    match = _PATH.search(text)
    detail = text[: match.start()] if match else text
    if detail.startswith("Object missing required field"):
        return f"Invalid request body: {detail[0].lower()}{detail[1:]}"
    where = match.group(1) if match and match.group(1) else "body"
    return f"Invalid request body: field `{where}`: {detail[0].lower()}{detail[1:]}"
