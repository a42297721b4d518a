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

from proxy.input_document import retry_after, tokens_retry_after
from proxy.store.base import RateCount, RateLimits, RateReason, RateState
from proxy.store.common import RATE_WINDOW_SECONDS

__all__ = ["duration_text", "rate_headers"]

Headers = tuple[tuple[str, str], ...]


def duration_text(seconds: float) -> str:
    """OpenAI's (Go's) duration text: `20ms`, `1.5s`, `59s`, `1m0s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def rate_headers(
    key_limits: RateLimits,
    project_limits: RateLimits,
    state: RateState,
    now: float,
    refused: RateReason | None = None,
    request_tokens: int = 0,
) -> Headers:
    """The headers for a response; empty when neither subject has `rpm` or `tpm` (or
    the windows were not counted). `request_tokens`: the refused request's bound."""
    pairs = ((key_limits, state.key), (project_limits, state.project))
    requests = _tightest(
        [(limits.rpm, count, count.requests) for limits, count in _counted(pairs, "rpm")]
    )
    tokens = _tightest(
        [(limits.tpm, count, count.tokens) for limits, count in _counted(pairs, "tpm")]
    )
    headers: list[tuple[str, str]] = []
    if refused == "rate_limit_tokens" and _never_fits(pairs, request_tokens):
        headers.append(("x-should-retry", "false"))
    elif refused is not None:
        headers.append(("retry-after", str(_retry_seconds(pairs, refused, now))))
    for kind, chosen in (("requests", requests), ("tokens", tokens)):
        if chosen is None:
            continue
        limit, count, used = chosen
        headers += [
            (f"x-ratelimit-limit-{kind}", str(limit)),
            (f"x-ratelimit-remaining-{kind}", str(max(0, limit - used))),
            (f"x-ratelimit-reset-{kind}", duration_text(_reset(count, now))),
        ]
    return tuple(headers)


def _never_fits(pairs: tuple[tuple[RateLimits, RateCount | None], ...], tokens: int) -> bool:
    """Whether the request's bound exceeds a `tpm` outright: no wait makes room."""
    return any(
        count is not None and limits.tpm is not None and tokens > limits.tpm
        for limits, count in pairs
    )


def _counted(
    pairs: tuple[tuple[RateLimits, RateCount | None], ...], ceiling: str
) -> list[tuple[RateLimits, RateCount]]:
    return [
        (limits, count)
        for limits, count in pairs
        if count is not None and getattr(limits, ceiling) is not None
    ]


def _tightest(
    candidates: list[tuple[int | None, RateCount, int]],
) -> tuple[int, RateCount, int] | None:
    best: tuple[int, RateCount, int] | None = None
    for limit, count, used in candidates:
        if limit is None:
            continue
        if best is None or limit - used < best[0] - best[2]:
            best = (limit, count, used)
    return best


def _reset(count: RateCount, now: float) -> float:
    if count.oldest is None:
        return 0.0
    return max(0.0, count.oldest + RATE_WINDOW_SECONDS - now)


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
