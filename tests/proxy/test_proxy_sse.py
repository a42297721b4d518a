"""The SSE relay: events pass through whole; the usage chunk is read and maybe dropped."""

from __future__ import annotations

from proxy.sse import SseRelay, TokenUsage

CONTENT = b'data: {"choices": [{"delta": {"content": "hi"}}], "usage": null}\n\n'
USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
DONE = b"data: [DONE]\n\n"


def test_usage_chunk_dropped_when_client_did_not_ask() -> None:
    relay = SseRelay(keep_usage_chunk=False)
    out = relay.feed(CONTENT + USAGE + DONE)
    assert out == CONTENT + DONE
    assert relay.usage == TokenUsage(prompt_tokens=3, completion_tokens=4)


def test_usage_chunk_kept_when_client_asked() -> None:
    relay = SseRelay(keep_usage_chunk=True)
    assert relay.feed(CONTENT + USAGE + DONE) == CONTENT + USAGE + DONE
    assert relay.usage == TokenUsage(prompt_tokens=3, completion_tokens=4)


def test_events_split_across_chunks_are_joined() -> None:
    relay = SseRelay(keep_usage_chunk=False)
    stream = CONTENT + USAGE + DONE
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    out = b"".join(relay.feed(piece) for piece in pieces) + relay.flush()
    assert out == CONTENT + DONE
    assert relay.usage is not None


def test_each_complete_event_is_sent_at_once() -> None:
    relay = SseRelay(keep_usage_chunk=False)
    assert relay.feed(CONTENT[:10]) == b""
    assert relay.feed(CONTENT[10:]) == CONTENT


def test_crlf_framing() -> None:
    relay = SseRelay(keep_usage_chunk=False)
    out = relay.feed((CONTENT + USAGE + DONE).replace(b"\n", b"\r\n"))
    assert out == CONTENT + DONE
    assert relay.usage == TokenUsage(prompt_tokens=3, completion_tokens=4)
