"""Relaying a provider's server-sent events while watching for the usage chunk.

The gateway always asks the provider for `stream_options.include_usage` (it needs the
final usage to settle the cost); when the client did not ask for it, that extra chunk
is dropped here. Everything else is passed through event by event, never buffered
beyond one incomplete event.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["SseRelay", "TokenUsage"]

_SEPARATOR = b"\n\n"
_decoder = msgspec.json.Decoder()


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's `usage` object, as far as cost needs it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


def usage_from(value: Any) -> TokenUsage | None:
    """Read a `usage` object; None when absent or malformed."""
    if not isinstance(value, dict):
        return None
    try:
        return msgspec.convert(value, TokenUsage, strict=False)
    except msgspec.ValidationError:
        return None


class SseRelay:
    """Feed upstream chunks in, get the bytes to send to the client out."""

    def __init__(self, keep_usage_chunk: bool) -> None:
        self._keep_usage_chunk = keep_usage_chunk
        self._pending = b""
        self.usage: TokenUsage | None = None
        self.events = 0

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
        if b'"usage"' not in complete:
            self.events += complete.count(_SEPARATOR)
            return complete
        kept = [event for event in complete.split(_SEPARATOR)[:-1] if self._keep(event)]
        self.events += len(kept)
        return b"".join(event + _SEPARATOR for event in kept)

    def flush(self) -> bytes:
        """Whatever incomplete event remains when the upstream ends."""
        rest, self._pending = self._pending, b""
        return rest

    def _keep(self, event: bytes) -> bool:
        if b'"usage"' not in event:
            return True
        payload = _event_json(event)
        if payload is None:
            return True
        usage = usage_from(payload.get("usage"))
        if usage is None:
            return True
        self.usage = usage
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
