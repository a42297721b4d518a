"""Relaying a provider's server-sent events while watching for the usage they report.

Chat and completions: the gateway always asks the provider for
`stream_options.include_usage` (it needs the final usage to settle the cost); when the
client did not ask for it, that extra chunk is dropped here. Responses and Messages
streams always carry their usage (`response.completed`; `message_start` and
`message_delta`): nothing is dropped. Everything else is passed through event by
event, never buffered beyond one incomplete event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from proxy.usage import TokenUsage, chat_usage, messages_usage, responses_usage

__all__ = [
    "SseRelay",
    "StreamTextReader",
    "StreamUsageReader",
    "TokenUsage",
    "chat_stream_text",
    "chat_stream_usage",
    "messages_stream_text",
    "messages_stream_usage",
    "responses_stream_text",
    "responses_stream_usage",
]

_SEPARATOR = b"\n\n"
_decoder = msgspec.json.Decoder()

# (event payload, usage read so far) -> (usage now, whether it is the final figure)
StreamUsageReader = Callable[[dict[str, Any], TokenUsage | None], tuple[TokenUsage | None, bool]]

# event payload -> UTF-8 bytes of the generated text it carries (content, reasoning,
# tool-call arguments), the measure of a stream cut before its usage arrived.
StreamTextReader = Callable[[dict[str, Any]], int]

_RESPONSE_ENDINGS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def chat_stream_usage(
    payload: dict[str, Any], earlier: TokenUsage | None
) -> tuple[TokenUsage | None, bool]:
    """The usage chunk of a chat or completions stream (`include_usage`)."""
    usage = chat_usage(payload.get("usage"))
    return (usage, True) if usage is not None else (earlier, False)


def responses_stream_usage(
    payload: dict[str, Any], earlier: TokenUsage | None
) -> tuple[TokenUsage | None, bool]:
    """`response.completed` (or `.incomplete` / `.failed`) carries the response's usage."""
    response = payload.get("response")
    if payload.get("type") in _RESPONSE_ENDINGS and isinstance(response, dict):
        usage = responses_usage(response.get("usage"))
        if usage is not None:
            return usage, True
    return earlier, False


def messages_stream_usage(
    payload: dict[str, Any], earlier: TokenUsage | None
) -> tuple[TokenUsage | None, bool]:
    """`message_start` reports the input, `message_delta` the final output tokens."""
    kind = payload.get("type")
    if kind == "message_start":
        message = payload.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        return messages_usage(usage, earlier), False
    if kind == "message_delta" and isinstance(payload.get("usage"), dict):
        return messages_usage(payload["usage"], earlier), True
    return earlier, False


def _text_bytes(value: Any) -> int:
    return len(value.encode("utf-8")) if isinstance(value, str) else 0


def _call_bytes(call: Any) -> int:
    """A streamed tool or function call: its name and argument text."""
    if not isinstance(call, dict):
        return 0
    function = call.get("function")
    named = function if isinstance(function, dict) else call
    return _text_bytes(named.get("name")) + _text_bytes(named.get("arguments"))


def chat_stream_text(payload: dict[str, Any]) -> int:
    """Chat and completions chunks: each choice's delta (content, reasoning, refusal,
    tool calls) or text."""
    total = 0
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        total += _text_bytes(choice.get("text"))
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for field in ("content", "reasoning_content", "reasoning", "refusal"):
                total += _text_bytes(delta.get(field))
            calls = delta.get("tool_calls")
            total += sum(_call_bytes(call) for call in calls) if isinstance(calls, list) else 0
            total += _call_bytes(delta.get("function_call"))
    return total


def responses_stream_text(payload: dict[str, Any]) -> int:
    """Responses events: every `*.delta` event carries its generated text in `delta`."""
    kind = payload.get("type")
    if isinstance(kind, str) and kind.endswith(".delta"):
        return _text_bytes(payload.get("delta"))
    return 0


def messages_stream_text(payload: dict[str, Any]) -> int:
    """Messages events: `content_block_delta` carries text, thinking or tool input JSON."""
    delta = payload.get("delta")
    if payload.get("type") != "content_block_delta" or not isinstance(delta, dict):
        return 0
    return sum(_text_bytes(delta.get(f)) for f in ("text", "thinking", "partial_json"))


class SseRelay:
    """Feed upstream chunks in, get the bytes to send to the client out."""

    def __init__(
        self,
        keep_usage_chunk: bool,
        reader: StreamUsageReader = chat_stream_usage,
        text_reader: StreamTextReader = chat_stream_text,
    ) -> None:
        self._keep_usage_chunk = keep_usage_chunk
        self._reader = reader
        self._text_reader = text_reader
        self._pending = b""
        self.usage: TokenUsage | None = None
        # True once the provider's final usage figure was seen (a stream cut before it
        # is charged by the rule in gateway._settle_stream instead).
        self.final = False
        self.events = 0
        # UTF-8 bytes of the generated text relayed so far (see `StreamTextReader`).
        self.text_bytes = 0

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in `chunk` (plus what was pending) that go to the client."""
        data = self._pending + chunk
        if b"\r" in data:  # CRLF-framed events: same meaning, one framing to parse
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(_SEPARATOR)
        if end < 0:
            self._pending = data
            return b""
        complete, self._pending = data[: end + 2], data[end + 2 :]
        events = complete.split(_SEPARATOR)[:-1]
        kept = [event for event in events if self._keep(event)]
        self.events += len(kept)
        if len(kept) == len(events):
            return complete
        return b"".join(event + _SEPARATOR for event in kept)

    def flush(self) -> bytes:
        """Whatever incomplete event remains when the upstream ends."""
        rest, self._pending = self._pending, b""
        return rest

    def _keep(self, event: bytes) -> bool:
        payload = _event_json(event)
        if payload is None:
            return True
        self.text_bytes += self._text_reader(payload)
        if b'"usage"' not in event:
            return True
        usage, final = self._reader(payload, self.usage)
        if usage is None or usage is self.usage:
            return True
        self.usage = usage
        self.final = self.final or final
        # The usage-only chunk has no choices; chunks that also carry content stay.
        return self._keep_usage_chunk or bool(payload.get("choices"))


def _event_json(event: bytes) -> dict[str, Any] | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                value = _decoder.decode(line[5:].strip())
            except msgspec.DecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None
