"""Building the policy's input document from request facts and the key's context (pure).

No I/O and no clock here: the caller passes the time and the client address, so the
same facts always give the same document (docs/architecture.md §3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

from proxy.budgets import Budget
from proxy.documents import (
    GatewayInfo,
    IamRuleDocument,
    InputDocument,
    KeyDocument,
    OrganizationDocument,
    PeriodBudgetDocument,
    ProjectDocument,
    RateLimitsDocument,
    RequestDocument,
    StoredBudgetDocument,
    engine_input,
)
from proxy.store.base import (
    IamRule,
    KeyContext,
    KeyInputParts,
    ProjectRule,
    RateCount,
    RateLimits,
    RateState,
)
from proxy.store.common import RATE_WINDOW_SECONDS

__all__ = [
    "EngineMembers",
    "build_input",
    "engine_document",
    "engine_members",
    "gateway_info",
    "key_input_parts",
    "rate_document",
    "retry_after",
    "tokens_retry_after",
    "with_input_parts",
]


def gateway_info(credentialed: Iterable[str]) -> GatewayInfo:
    """The gateway's own credentials, `mock` always included, sorted for stable output."""
    return GatewayInfo(credentialed_providers=tuple(sorted({"mock", *credentialed})))


def build_input(
    request: RequestDocument,
    context: KeyContext | None,
    gateway: GatewayInfo,
    rate: RateState | None = None,
    now: float | None = None,
    limits: tuple[RateLimits, RateLimits] | None = None,
    key_budget: PeriodBudgetDocument | None = None,
    project_budget: PeriodBudgetDocument | None = None,
) -> InputDocument:
    """The input document: `key`/`project`/`organization` are null for an unknown token.
    `rate` is the windows the store saw (when it refused a rate limit) at request time
    `now` (epoch seconds) under `limits` (the key's and the project's as admitted: the
    store's own lowered by policy files); without them the windows' counts are null
    (not counted yet) and the limits are the store's. The period budgets' windows
    (`proxy.budget_facts`) come from the caller, who read their figures for the
    request's time."""
    if context is None:
        return InputDocument(request=request, gateway=gateway)
    key = context.key
    project = context.project
    organization = context.organization
    key_limits, project_limits = limits or (key.rate_limits, project.rate_limits)
    return InputDocument(
        request=request,
        key=KeyDocument(
            id=key.id,
            status=key.status,
            # INVARIANT: the settled figures: the documented 401 / 402 answer only when
            # they alone decide; in-flight reservations are the store's admission's
            # business (contract §6), shown here for policies that want them.
            usage=key.usage,
            reserved=context.reserved,
            usage_limit=key.usage_limit,
            project_id=key.project_id,
            iam_rules=tuple(_rule(rule) for rule in context.rules),
            expires_at=key.expires_at,
            token_expires_at=context.token_expires_at,
            rate_limits=rate_document(key_limits, rate.key if rate else None, now),
            period_budget=key_budget,
            stored_budget=_stored(key.budget),
        ),
        project=ProjectDocument(
            id=project.id,
            status=project.status,
            mode=project.mode,
            provider_keys=tuple(sorted(project.provider_keys)),
            iam_rules=tuple(_rule(rule) for rule in context.project_rules),
            rate_limits=rate_document(project_limits, rate.project if rate else None, now),
            period_budget=project_budget,
            stored_budget=_stored(project.budget),
        ),
        organization=OrganizationDocument(
            id=organization.id,
            credits=organization.credits,
            credits_reserved=context.credits_reserved,
        ),
        gateway=gateway,
    )


def key_input_parts(context: KeyContext) -> KeyInputParts:
    """The record's members of the engine's input: `engine_input(build_input(...))`'s
    `key`, `project` and `organization` for a request's first decision (no budget
    window, the rate windows not counted), whatever the request."""
    value = engine_input(build_input(_ANY_REQUEST, context, _ANY_GATEWAY))
    return KeyInputParts(
        key=value["key"], project=value["project"], organization=value["organization"]
    )


def with_input_parts(context: KeyContext) -> KeyContext:
    """`context` carrying its record's members of the engine's input (made once here, for
    every request the record serves)."""
    return msgspec.structs.replace(context, input_parts=key_input_parts(context))


EngineMembers = tuple[dict[str, Any], dict[str, Any]]
"""The engine input's `key` and `project` members of one record with its budget windows."""


def engine_document(
    request: RequestDocument,
    context: KeyContext | None,
    gateway: dict[str, Any],
    key_budget: PeriodBudgetDocument | None = None,
    project_budget: PeriodBudgetDocument | None = None,
    members: EngineMembers | None = None,
) -> dict[str, Any]:
    """`engine_input(build_input(request, context, ..., key_budget=..., project_budget=...))`
    (a request's decision before the store counted its rate windows), made from the
    record's prebuilt members (`context.input_parts`): only the request and the budget
    windows are converted per request. `gateway`: `engine_input`'s form of the
    gateway's `GatewayInfo`. The record's members are shared, not copied: the engine
    never changes its input (a key object with a budget window is a new dict).
    `members`: `engine_members(context, key_budget, project_budget)` made before (kept
    with the budget facts), taken as they are."""
    if context is None:
        return {
            "request": msgspec.to_builtins(request),
            "key": None,
            "project": None,
            "organization": None,
            "gateway": gateway,
        }
    parts = context.input_parts or key_input_parts(context)
    if members is None:
        members = _members(parts, key_budget, project_budget)
    key, project = members
    return {
        "request": msgspec.to_builtins(request),
        "key": key,
        "project": project,
        "organization": parts.organization,
        "gateway": gateway,
    }


def engine_members(
    context: KeyContext,
    key_budget: PeriodBudgetDocument | None,
    project_budget: PeriodBudgetDocument | None,
) -> EngineMembers:
    """`engine_document`'s `key` and `project` members for this record and these budget
    windows (made once for the budget facts a key's requests share, `KnownFacts`)."""
    return _members(context.input_parts or key_input_parts(context), key_budget, project_budget)


def _members(
    parts: KeyInputParts,
    key_budget: PeriodBudgetDocument | None,
    project_budget: PeriodBudgetDocument | None,
) -> EngineMembers:
    key, project = parts.key, parts.project
    if key_budget is not None:
        key = {**key, "period_budget": _window_value(key_budget)}
    if project_budget is not None:
        project = {**project, "period_budget": _window_value(project_budget)}
    return key, project


def _window_value(window: PeriodBudgetDocument) -> dict[str, Any]:
    """`engine_input`'s form of a budget window (money as `str` of the Decimal), written
    out: ~3.7k instructions against `msgspec.to_builtins`'s ~5.5k."""
    return {
        "amount": str(window.amount),
        "period": window.period,
        "usage": str(window.usage),
        "reserved": str(window.reserved),
        "window_start": window.window_start,
        "resets_at": window.resets_at,
    }


def rate_document(
    limits: RateLimits, count: RateCount | None, now: float | None
) -> RateLimitsDocument | None:
    """A subject's limits and, when counted, its window; None without limits."""
    if not limits.any:
        return None
    if count is None or now is None:
        return RateLimitsDocument(rpm=limits.rpm, tpm=limits.tpm, max_parallel=limits.max_parallel)
    return RateLimitsDocument(
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_parallel=limits.max_parallel,
        requests_in_window=count.requests,
        tokens_in_window=count.tokens,
        parallel=count.parallel,
        retry_after_seconds=retry_after(count, now),
        tokens_retry_after_seconds=tokens_retry_after(count, now),
    )


def retry_after(count: RateCount, now: float) -> int | None:
    """Whole seconds (at least 1) until the oldest request leaves the window."""
    if count.oldest is None:
        return None
    return max(1, math.ceil(count.oldest + RATE_WINDOW_SECONDS - now))


def tokens_retry_after(count: RateCount, now: float) -> int | None:
    """Whole seconds (at least 1) until the newest request leaves the window: when
    every token now in it has left. The shortest wait the window's figures can vouch
    for after a tokens-per-minute refusal: which requests hold how many tokens is not
    reported, so the oldest leaving may free too few."""
    if count.newest is not None:
        return max(1, math.ceil(count.newest + RATE_WINDOW_SECONDS - now))
    if count.oldest is not None:
        # A store that does not report its newest request (SQLite's refusal reads only
        # the oldest): every request counted was admitted by now, so all have left
        # within one window.
        return int(RATE_WINDOW_SECONDS)
    return None


def _stored(budget: Budget | None) -> StoredBudgetDocument | None:
    return (
        None if budget is None else StoredBudgetDocument(amount=budget.amount, period=budget.period)
    )


def _rule(rule: IamRule | ProjectRule) -> IamRuleDocument:
    return IamRuleDocument(id=rule.id, type=rule.type, values=rule.values, status=rule.status)


# What `key_input_parts` builds a document around: the record's members do not depend on it.
_ANY_REQUEST = RequestDocument(
    operation="chat.completions", token_present=True, time="1970-01-01T00:00:00Z", client_ip=""
)
_ANY_GATEWAY = GatewayInfo()
