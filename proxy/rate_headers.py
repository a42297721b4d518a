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

__all__ = ["HEADER_NAMES", "duration_text", "rate_headers"]

Headers = tuple[tuple[str, str], ...]

# Every name `rate_headers` gives (already lower case): the sender encodes them once.
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


def rate_headers(
    key_limits: RateLimits,
    project_limits: RateLimits,
    state: RateState,
    now: float,
    refused: RateReason | None = None,
    request_tokens: int = 0,
) -> Headers:
    """The headers for a response; empty when neither subject has `rpm` or `tpm` (or
    the windows were not counted). `request_tokens`: the refused request's bound.

    Every response of a rate-limited key builds them, so the choice of the tightest
    window is plain comparisons over the two subjects (list building and attribute
    lookups by name were ~19 us a response)."""
    key, project = state.key, state.project
    if project is None and refused is None:
        return _key_window_headers(key_limits, key, now)
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
    # Built as tuples (a list extended by lists, then copied, cost more; every reply of a
    # rate-limited key pays it).
    headers: Headers = ()
    if refused is not None:
        pairs = ((key_limits, key), (project_limits, project))
        if refused == "rate_limit_tokens" and _never_fits(pairs, request_tokens):
            headers = (("x-should-retry", "false"),)
        else:
            headers = (("retry-after", str(_retry_seconds(pairs, refused, now))),)
    requests_window, requests_reset = None, ""
    if requests is not None:
        limit, requests_window, used = requests
        requests_reset = _reset_text(requests_window, now)
        headers += (
            ("x-ratelimit-limit-requests", str(limit)),
            ("x-ratelimit-remaining-requests", str(limit - used) if limit > used else "0"),
            ("x-ratelimit-reset-requests", requests_reset),
        )
    if tokens is not None:
        limit, count, used = tokens
        # Both ceilings are usually one subject's: its window's reset is worked out once.
        reset = requests_reset if count is requests_window else _reset_text(count, now)
        headers += (
            ("x-ratelimit-limit-tokens", str(limit)),
            ("x-ratelimit-remaining-tokens", str(limit - used) if limit > used else "0"),
            ("x-ratelimit-reset-tokens", reset),
        )
    return headers


def _key_window_headers(limits: RateLimits, key: RateCount | None, now: float) -> Headers:
    """`rate_headers` of an admitted request whose project has no window: the key's
    lines alone, the usual reply of a rate-limited key. Written out (no `_tightest`
    calls, the one window's reset worked out once) since every such reply pays it."""
    if key is None:
        return ()
    rpm, tpm = limits.rpm, limits.tpm
    if rpm is None and tpm is None:
        return ()
    oldest = key.oldest
    reset = "0s" if oldest is None else duration_text(oldest + RATE_WINDOW_SECONDS - now)
    headers: Headers = ()
    if rpm is not None:
        used = key.requests
        headers = (
            ("x-ratelimit-limit-requests", str(rpm)),
            ("x-ratelimit-remaining-requests", str(rpm - used) if rpm > used else "0"),
            ("x-ratelimit-reset-requests", reset),
        )
    if tpm is not None:
        used = key.tokens
        headers += (
            ("x-ratelimit-limit-tokens", str(tpm)),
            ("x-ratelimit-remaining-tokens", str(tpm - used) if tpm > used else "0"),
            ("x-ratelimit-reset-tokens", reset),
        )
    return headers


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


def _reset_text(count: RateCount, now: float) -> str:
    """When the window's oldest request leaves it, as `duration_text` (`0s` for an
    empty window or one already past)."""
    oldest = count.oldest
    return "0s" if oldest is None else duration_text(oldest + RATE_WINDOW_SECONDS - now)


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
