"""OpenAI's rate-limit response headers for a key with rate limits (issue 13 point 2).

Every response of a request whose key or project has `rpm` or `tpm` carries
`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
`x-ratelimit-reset-requests` and the `-tokens` variants, as OpenAI sends them; a
refusal also carries `Retry-After` (whole seconds), except a request whose token bound
exceeds a `tpm` ("Request too large"): it never fits, so it gets `x-should-retry:
false` instead, which the openai and anthropic SDKs read before retrying a 429. When
both the key and its project set a ceiling, the headers show the one with less room
left. Figures are the store's windows right after admitting the request (it is
counted) or when refusing it.

`x-ratelimit-reset-*` says when room frees up: the time until the oldest request of
the window leaves it (a sliding window frees one request at a time, so this is when
the next request fits), in OpenAI's duration format (`1s`, `6m0s`, `20ms`).
"""

from __future__ import annotations

import math
from typing import Final

from proxy.input_document import retry_after, tokens_retry_after
from proxy.store.base import RateCount, RateLimits, RateReason, RateState
from proxy.store.common import RATE_WINDOW_SECONDS

__all__ = ["HEADER_NAMES", "duration_text", "header_pairs", "rate_lines"]

Headers = tuple[tuple[str, str], ...]

# Every name `rate_lines` gives (already lower case): the sender encodes them once.
HEADER_NAMES: Final = (
    "retry-after",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


# `duration_text` of whole seconds under a minute (a reset is the oldest request's time,
# whole seconds, plus the window, minus the request time): a lookup, not a format.
_WHOLE_SECONDS: Final = tuple(f"{whole}s" for whole in range(60))
_WHOLE_SECONDS_TEXT: Final = tuple(text.encode("ascii") for text in _WHOLE_SECONDS)
# The lines of one ceiling (limit, remaining, reset), and of both from one window.
_REQUESTS_LINES: Final = (
    b"x-ratelimit-limit-requests: %d\r\n"
    b"x-ratelimit-remaining-requests: %d\r\n"
    b"x-ratelimit-reset-requests: %s\r\n"
)
_TOKENS_LINES: Final = (
    b"x-ratelimit-limit-tokens: %d\r\n"
    b"x-ratelimit-remaining-tokens: %d\r\n"
    b"x-ratelimit-reset-tokens: %s\r\n"
)
_BOTH_LINES: Final = _REQUESTS_LINES + _TOKENS_LINES


def duration_text(seconds: float) -> str:
    """OpenAI's (Go's) duration text: `20ms`, `1.5s`, `59s`, `1m0s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 60:
        whole = int(seconds)
        if whole == seconds:  # request times are whole seconds: the usual case
            return _WHOLE_SECONDS[whole]
        if seconds < 1:
            return f"{math.ceil(seconds * 1000)}ms"
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def header_pairs(lines: bytes) -> Headers:
    """`rate_lines`' text as (name, value) pairs, in order (for a sender that takes
    pairs: Litestar's responses, an ASGI `send`)."""
    return tuple(
        (name, value)
        for name, _, value in (
            line.partition(": ") for line in lines.decode("latin-1").split("\r\n")
        )
        if name
    )


def rate_lines(
    key_limits: RateLimits,
    project_limits: RateLimits,
    state: RateState,
    now: float,
    refused: RateReason | None = None,
    request_tokens: int = 0,
) -> bytes:
    """The headers for a response as HTTP header lines (`name: value\\r\\n` each, names
    in lower case, latin-1); empty when neither subject has `rpm` or `tpm` (or the
    windows were not counted). `request_tokens`: the refused request's bound.

    Every response of a rate-limited key builds them, so they are rendered as the text
    uvicorn writes, by one bytes format per ceiling: the whole-reply sender passes
    them to the response head as they are, with no line-by-line encoding and checking
    (pairs of text were ~38k instructions a reply from building to the head). The
    choice of the tightest window is plain comparisons over the two subjects."""
    key, project = state.key, state.project
    if project is None and refused is None:
        return _key_window_lines(key_limits, key, now)
    requests = _tightest(
        None if key is None else key_limits.rpm,
        key,
        None if project is None else project_limits.rpm,
        project,
        tokens=False,
    )
    tokens = _tightest(
        None if key is None else key_limits.tpm,
        key,
        None if project is None else project_limits.tpm,
        project,
        tokens=True,
    )
    lines = b""
    if refused is not None:
        pairs = ((key_limits, key), (project_limits, project))
        if refused == "rate_limit_tokens" and _never_fits(pairs, request_tokens):
            lines = b"x-should-retry: false\r\n"
        else:
            lines = b"retry-after: %d\r\n" % _retry_seconds(pairs, refused, now)
    requests_window, requests_reset = None, b""
    if requests is not None:
        limit, requests_window, used = requests
        requests_reset = _reset_text(requests_window, now)
        lines += _REQUESTS_LINES % (limit, limit - used if limit > used else 0, requests_reset)
    if tokens is not None:
        limit, count, used = tokens
        # Both ceilings are usually one subject's: its window's reset is worked out once.
        reset = requests_reset if count is requests_window else _reset_text(count, now)
        lines += _TOKENS_LINES % (limit, limit - used if limit > used else 0, reset)
    return lines


def _key_window_lines(limits: RateLimits, key: RateCount | None, now: float) -> bytes:
    """`rate_lines` of an admitted request whose project has no window: the key's
    lines alone, the usual reply of a rate-limited key. Written out (no `_tightest`
    calls, the one window's reset worked out once) since every such reply pays it."""
    if key is None:
        return b""
    rpm, tpm = limits.rpm, limits.tpm
    if rpm is None:
        if tpm is None:
            return b""
        used = key.tokens
        return _TOKENS_LINES % (tpm, tpm - used if tpm > used else 0, _reset_text(key, now))
    used = key.requests
    if tpm is None:
        return _REQUESTS_LINES % (rpm, rpm - used if rpm > used else 0, _reset_text(key, now))
    tokens = key.tokens
    reset = _reset_text(key, now)
    return _BOTH_LINES % (
        rpm,
        rpm - used if rpm > used else 0,
        reset,
        tpm,
        tpm - tokens if tpm > tokens else 0,
        reset,
    )


def _never_fits(pairs: tuple[tuple[RateLimits, RateCount | None], ...], tokens: int) -> bool:
    """Whether the request's bound exceeds a `tpm` outright: no wait makes room."""
    return any(
        count is not None and limits.tpm is not None and tokens > limits.tpm
        for limits, count in pairs
    )


def _tightest(
    key_limit: int | None,
    key: RateCount | None,
    project_limit: int | None,
    project: RateCount | None,
    *,
    tokens: bool,
) -> tuple[int, RateCount, int] | None:
    """(limit, window, used) of the subject with less room left under its ceiling (the
    key on a tie); None when neither subject has that ceiling counted. A limit is
    given only with its window."""
    best: tuple[int, RateCount, int] | None = None
    if key_limit is not None and key is not None:
        best = (key_limit, key, key.tokens if tokens else key.requests)
    if project_limit is not None and project is not None:
        used = project.tokens if tokens else project.requests
        if best is None or project_limit - used < best[0] - best[2]:
            best = (project_limit, project, used)
    return best


def _reset_text(count: RateCount, now: float) -> bytes:
    """When the window's oldest request leaves it, as `duration_text` (`0s` for an
    empty window or one already past), encoded."""
    oldest = count.oldest
    if oldest is None:
        return b"0s"
    seconds = oldest + RATE_WINDOW_SECONDS - now
    whole = int(seconds)
    if whole == seconds and 0 < whole < 60:  # request times are whole seconds: the usual case
        return _WHOLE_SECONDS_TEXT[whole]
    return duration_text(seconds).encode("ascii")


def _retry_seconds(
    pairs: tuple[tuple[RateLimits, RateCount | None], ...], refused: RateReason, now: float
) -> int:
    """Whole seconds until the window that refused has room (1 for parallel requests:
    when one finishes is unknown). For tokens, until every token now in the window has
    left it: never less than the wait for enough of them to leave for the refused
    request, which the window's figures (its oldest and newest request, not each one's
    tokens) cannot tell more closely; waiting for the oldest alone could be too short."""
    if refused == "max_parallel":
        return 1
    wait = retry_after if refused == "rate_limit_requests" else tokens_retry_after
    waits = [
        wait(count, now) or 1
        for limits, count in pairs
        if count is not None
        and (limits.rpm if refused == "rate_limit_requests" else limits.tpm) is not None
    ]
    return max(waits, default=1)
