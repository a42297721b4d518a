"""The rate limits a request's claim holds (`proxy.gateway._admitted_limits`): the
policy's ceilings, as the record's own `RateLimits` when they are its values."""

from __future__ import annotations

from proxy_helpers import key_context

from proxy.documents import Decision, DecisionRateLimits, RateLimitValues
from proxy.gateway import _admitted_limits
from proxy.store.base import (
    NO_RATE_LIMITS,
    KeyContext,
    Project,
    RateLimits,
)

KEY_LIMITS = RateLimits(rpm=600, tpm=1_000_000, max_parallel=8)
PROJECT_LIMITS = RateLimits(rpm=6000)


def _context() -> KeyContext:
    return key_context(
        rate_limits=KEY_LIMITS,
        project=Project(id="default", organization_id="default", rate_limits=PROJECT_LIMITS),
    )


def _decision(key: RateLimitValues | None, project: RateLimitValues | None) -> Decision:
    return Decision(
        allow=True, status=200, rate_limits=DecisionRateLimits(key=key, project=project)
    )


def test_the_records_own_limits_are_held_when_the_policy_keeps_them() -> None:
    context = _context()
    decision = _decision(
        RateLimitValues(rpm=600, tpm=1_000_000, max_parallel=8), RateLimitValues(rpm=6000)
    )
    key_limits, project_limits = _admitted_limits(decision, context)
    assert key_limits is context.key.rate_limits
    assert project_limits is context.project.rate_limits


def test_limits_lowered_by_the_policy_are_held_as_the_policy_says() -> None:
    context = _context()
    decision = _decision(
        RateLimitValues(rpm=600, tpm=500, max_parallel=8), RateLimitValues(rpm=6000, tpm=7)
    )
    key_limits, project_limits = _admitted_limits(decision, context)
    assert key_limits == RateLimits(rpm=600, tpm=500, max_parallel=8)
    assert project_limits == RateLimits(rpm=6000, tpm=7)
    assert context.key.rate_limits == KEY_LIMITS  # the record is left as it was
    assert context.project.rate_limits == PROJECT_LIMITS


def test_a_window_the_policy_leaves_unlimited_holds_no_limits() -> None:
    context = _context()
    assert _admitted_limits(_decision(None, None), context) == (NO_RATE_LIMITS, NO_RATE_LIMITS)
    decision = Decision(allow=True, status=200)  # a policy that does not say: the store's own
    key_limits, project_limits = _admitted_limits(decision, context)
    assert key_limits is context.key.rate_limits
    assert project_limits is context.project.rate_limits
