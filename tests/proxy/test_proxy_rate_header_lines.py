"""The rate headers' lines are the same as the straightforward formulas give them (issue
13): `rate_lines` (the header text, one bytes format per ceiling, read back as pairs by
`header_pairs`) and `duration_text` are written for speed (a lookup for whole seconds),
so they are compared here, on generated windows, with the plain text of what they must
say."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_helpers import rate_header_pairs
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from proxy.input_document import retry_after, tokens_retry_after
from proxy.rate_headers import HEADER_NAMES, duration_text, rate_lines
from proxy.store.base import RateCount, RateLimits, RateReason, RateState
from proxy.store.common import RATE_WINDOW_SECONDS

Headers = tuple[tuple[str, str], ...]


def _plain_duration(seconds: float) -> str:
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def _plain_headers(
    key_limits: RateLimits,
    project_limits: RateLimits,
    state: RateState,
    now: float,
    refused: RateReason | None,
    request_tokens: int,
) -> Headers:
    """The documented lines, worked out the long way: the subject with less room left
    under each ceiling (the key on a tie), its window's reset, a refusal's line first."""
    pairs = [(key_limits, state.key), (project_limits, state.project)]
    lines: list[tuple[str, str]] = []
    if refused is not None:
        tpm_pairs = [(lim.tpm, count) for lim, count in pairs if count is not None]
        if refused == "rate_limit_tokens" and any(
            tpm is not None and request_tokens > tpm for tpm, _ in tpm_pairs
        ):
            lines.append(("x-should-retry", "false"))
        elif refused == "max_parallel":
            lines.append(("retry-after", "1"))
        else:
            wait = retry_after if refused == "rate_limit_requests" else tokens_retry_after
            field = "rpm" if refused == "rate_limit_requests" else "tpm"
            waits = [
                wait(count, now) or 1
                for lim, count in pairs
                if count is not None and getattr(lim, field) is not None
            ]
            lines.append(("retry-after", str(max(waits, default=1))))
    for field, kind in (("rpm", "requests"), ("tpm", "tokens")):
        candidates = [
            (getattr(lim, field), count, getattr(count, kind))
            for lim, count in pairs
            if count is not None and getattr(lim, field) is not None
        ]
        if not candidates:
            continue
        limit, count, used = candidates[0]
        for other in candidates[1:]:
            if other[0] - other[2] < limit - used:
                limit, count, used = other
        reset = 0.0 if count.oldest is None else count.oldest + RATE_WINDOW_SECONDS - now
        lines += [
            (f"x-ratelimit-limit-{kind}", str(limit)),
            (f"x-ratelimit-remaining-{kind}", str(max(0, limit - used))),
            (f"x-ratelimit-reset-{kind}", _plain_duration(max(0.0, reset))),
        ]
    return tuple(lines)


@settings(max_examples=1000)
@given(
    st.one_of(
        st.floats(min_value=-100, max_value=4000, allow_nan=False),
        st.integers(min_value=-5, max_value=4000).map(float),
        st.integers(min_value=0, max_value=60_000).map(lambda ms: ms / 1000),
    )
)
def test_duration_text_is_go_s_duration_text(seconds: float) -> None:
    assert duration_text(seconds) == _plain_duration(seconds)


def test_duration_text_of_whole_seconds() -> None:
    assert [duration_text(float(n)) for n in (0, 1, 9, 59, 60, 61, 3600)] == [
        "0s",
        "1s",
        "9s",
        "59s",
        "1m0s",
        "1m1s",
        "60m0s",
    ]
    assert (duration_text(0.02), duration_text(1.5), duration_text(59.999)) == (
        "20ms",
        "1.5s",
        "59.999s",
    )


_limits = st.builds(
    RateLimits,
    rpm=st.none() | st.integers(0, 200),
    tpm=st.none() | st.integers(0, 20_000),
    max_parallel=st.none() | st.integers(1, 8),
)
_NOW = 1_796_648_400.0
_times = st.none() | st.integers(-90, 0).map(lambda s: _NOW + s) | st.floats(_NOW - 90, _NOW)
_counts = st.none() | st.builds(
    RateCount,
    requests=st.integers(0, 250),
    tokens=st.integers(0, 25_000),
    parallel=st.integers(0, 9),
    oldest=_times,
    newest=_times,
)


@settings(max_examples=1000)
@given(
    _limits,
    _limits,
    _counts,
    _counts,
    st.sampled_from([_NOW, _NOW + 0.25]),
    st.none() | st.sampled_from(["rate_limit_requests", "rate_limit_tokens", "max_parallel"]),
    st.integers(0, 30_000),
)
def test_rate_headers_and_lines_say_what_the_plain_formulas_say(
    key_limits: RateLimits,
    project_limits: RateLimits,
    key: RateCount | None,
    project: RateCount | None,
    now: float,
    refused: RateReason | None,
    request_tokens: int,
) -> None:
    """Both forms are the documented headers: the pairs, and the lines the whole-reply
    sender writes into the response head as they are (proxy/response_head.py), so each
    one line uvicorn would accept and write the same (lower-case name, no byte its
    patterns refuse), and none of the lines that change its cycle's state."""
    state = RateState(key=key, project=project)
    plain = _plain_headers(key_limits, project_limits, state, now, refused, request_tokens)
    assert (
        rate_header_pairs(key_limits, project_limits, state, now, refused, request_tokens) == plain
    )
    text = rate_lines(key_limits, project_limits, state, now, refused, request_tokens)
    assert text == b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in plain)
    for name, value in plain:
        assert name in HEADER_NAMES
        assert name == name.lower()
        assert HEADER_RE.search(name.encode("latin-1")) is None
        assert HEADER_VALUE_RE.search(value.encode("latin-1")) is None
        assert ":" not in name
        assert name not in ("content-length", "transfer-encoding", "connection")
