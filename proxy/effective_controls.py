"""The controls that apply to a key or a project, and where each comes from, for the
CLI (`gateway keys show`, `projects show`), the admin API and the dashboard.

A key's period budget and rate limits may be stored on it (the key store) or set by a
policy file (`budgets:` / `rate_limits:` in `*.iam.yaml`). What applies is the
policy's answer, `data.gateway.effective_controls`, asked with the same facts a
request would carry (the key, its project, their stored controls, the request time):
so a budget only a policy file sets is shown, instead of "no budget", and each
control says whether it is the stored one (`store`) or a policy file's (`policy`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec

from proxy.budget_facts import BudgetReader, current_window, parse_time
from proxy.budgets import Budget, Period, format_budget, rfc3339
from proxy.money import money_text
from proxy.store.base import ApiKey, Project, RateCount, RateLimits, RateState
from proxy.store.common import RATE_WINDOW_SECONDS

__all__ = [
    "ControlsQuery",
    "EffectiveBudget",
    "EffectiveControls",
    "EffectiveLimit",
    "controls_input",
    "controls_text",
    "duration_text",
    "effective_budget_json",
    "effective_controls",
    "effective_limits_json",
    "rate_window_json",
    "shown_controls",
]

logger = logging.getLogger(__name__)

Source = Literal["store", "policy"]
RATE_LIMIT_NAMES = ("rpm", "tpm", "max_parallel")

# `data.gateway.effective_controls` for one input document (None: the policy does not
# define it, or could not be loaded; then the stored controls are shown as applying).
ControlsQuery = Callable[[dict[str, Any]], object]


class EffectiveBudget(msgspec.Struct, frozen=True, kw_only=True):
    """The period budget that applies and where it comes from."""

    budget: Budget
    source: Source
    policy_id: str | None = None  # the policy file budget's `id`, when it has one


class EffectiveLimit(msgspec.Struct, frozen=True, kw_only=True):
    """One rate limit that applies and where it comes from."""

    limit: int
    source: Source


class EffectiveControls(msgspec.Struct, frozen=True, kw_only=True):
    """What applies to a key (and its project), or to a project alone."""

    key_budget: EffectiveBudget | None = None
    project_budget: EffectiveBudget | None = None
    key_limits: dict[str, EffectiveLimit | None] = msgspec.field(default_factory=dict)
    project_limits: dict[str, EffectiveLimit | None] = msgspec.field(default_factory=dict)
    # Why the policy's answer is missing (shown next to the stored controls), if it is.
    policy_problem: str | None = None


class _AnsweredBudget(msgspec.Struct, frozen=True):
    amount: str
    period: Period
    source: Source = "policy"
    id: str | None = None


class _AnsweredLimits(msgspec.Struct, frozen=True):
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


class _AnsweredBudgets(msgspec.Struct, frozen=True):
    key: _AnsweredBudget | None = None
    project: _AnsweredBudget | None = None


class _AnsweredRateLimits(msgspec.Struct, frozen=True):
    key: _AnsweredLimits | None = None
    project: _AnsweredLimits | None = None


class _Answer(msgspec.Struct, frozen=True):
    budgets: _AnsweredBudgets
    rate_limits: _AnsweredRateLimits


def _stored_budget(budget: Budget | None) -> dict[str, str] | None:
    if budget is None:
        return None
    return {"amount": money_text(budget.amount), "period": budget.period}


def _stored_limits(limits: RateLimits) -> dict[str, int] | None:
    if not limits.any:
        return None
    return {
        name: value for name in RATE_LIMIT_NAMES if (value := getattr(limits, name)) is not None
    }


def controls_input(key: ApiKey | None, project: Project, time: str) -> dict[str, Any]:
    """The facts the policy weighs for `key` (None: the project alone) at `time`: the
    subset of a request's input document that decides budgets and rate limits."""
    document: dict[str, Any] = {
        "request": {
            "operation": "chat.completions",
            "token_present": key is not None,
            "model": None,
            "body_error": None,
            "max_tokens": None,
            "stream": False,
            "time": time,
            "client_ip": "",
        },
        "key": None,
        "project": {
            "id": project.id,
            "status": project.status,
            "mode": project.mode,
            "provider_keys": sorted(project.provider_keys),
            "iam_rules": [],
            "rate_limits": _stored_limits(project.rate_limits),
            "period_budget": None,
            "stored_budget": _stored_budget(project.budget),
        },
        "organization": {"id": project.organization_id, "credits": "0"},
        "gateway": {"credentialed_providers": ["mock"]},
    }
    if key is not None:
        document["key"] = {
            "id": key.id,
            "status": key.status,
            "usage": money_text(key.usage),
            "usage_limit": None if key.usage_limit is None else money_text(key.usage_limit),
            "project_id": key.project_id,
            "iam_rules": [],
            "expires_at": key.expires_at,
            "rate_limits": _stored_limits(key.rate_limits),
            "period_budget": None,
            "stored_budget": _stored_budget(key.budget),
        }
    return document


def _as_stored(
    key: ApiKey | None, project: Project, problem: str | None = None
) -> EffectiveControls:
    def budget(stored: Budget | None) -> EffectiveBudget | None:
        return None if stored is None else EffectiveBudget(budget=stored, source="store")

    def limits(stored: RateLimits) -> dict[str, EffectiveLimit | None]:
        return {
            name: None if value is None else EffectiveLimit(limit=value, source="store")
            for name in RATE_LIMIT_NAMES
            for value in [getattr(stored, name)]
        }

    return EffectiveControls(
        key_budget=None if key is None else budget(key.budget),
        project_budget=budget(project.budget),
        key_limits={} if key is None else limits(key.rate_limits),
        project_limits=limits(project.rate_limits),
        policy_problem=problem,
    )


def effective_controls(
    query: ControlsQuery | None,
    key: ApiKey | None,
    project: Project,
    time: str,
    problem: str = "the policy does not define data.gateway.effective_controls",
) -> EffectiveControls:
    """The controls that apply to `key` (None: to `project` alone) at `time` (RFC 3339),
    as the policy answers. Without an answer (`query` None, or a policy that does not
    define `effective_controls`) the stored controls are shown, with `policy_problem`
    (`problem`) saying why."""
    if query is None:
        return _as_stored(key, project, problem)
    try:
        value = query(controls_input(key, project, time))
        answer = msgspec.convert(value, _Answer)
    except msgspec.ValidationError:
        logger.warning("the policy gives no usable data.gateway.effective_controls")
        return _as_stored(key, project, problem)

    def limits(
        answered: _AnsweredLimits | None, stored: RateLimits
    ) -> dict[str, EffectiveLimit | None]:
        shown: dict[str, EffectiveLimit | None] = {}
        for name in RATE_LIMIT_NAMES:
            value = None if answered is None else getattr(answered, name)
            own = getattr(stored, name)
            # The effective limit is the lowest of the stored one and the files': it is
            # the stored one exactly when they are equal.
            source: Source = "store" if value == own else "policy"
            shown[name] = None if value is None else EffectiveLimit(limit=value, source=source)
        return shown

    return EffectiveControls(
        key_budget=None if key is None else _budget(answer.budgets.key),
        project_budget=_budget(answer.budgets.project),
        key_limits={} if key is None else limits(answer.rate_limits.key, key.rate_limits),
        project_limits=limits(answer.rate_limits.project, project.rate_limits),
    )


def _budget(answered: _AnsweredBudget | None) -> EffectiveBudget | None:
    if answered is None:
        return None
    return EffectiveBudget(
        budget=Budget(amount=Decimal(answered.amount), period=answered.period),
        source=answered.source,
        policy_id=answered.id,
    )


async def effective_budget_json(
    store: BudgetReader,
    owner: Literal["key", "project"],
    owner_id: str,
    applied: EffectiveBudget | None,
    stored: Budget | None,
    at: datetime,
    zone: ZoneInfo,
) -> dict[str, Any] | None:
    """The budget that applies with its current window (usage, in flight, reset and
    the seconds to it), where it comes from, and the stored budget when it is not the
    one held (a policy file's budget of another period holds instead)."""
    if applied is None:
        return None
    window = await current_window(store, owner, owner_id, applied.budget, at, zone)
    if window is None:
        return None
    resets = parse_time(window.resets_at)
    not_held = (
        format_budget(stored)
        if stored is not None and applied.source == "policy" and stored.period != window.period
        else None
    )
    return {
        "budget": format_budget(applied.budget),
        "amount": money_text(window.amount),
        "period": window.period,
        "usage": money_text(window.usage),
        "reserved": money_text(window.reserved),
        "window_start": window.window_start,
        "resets_at": window.resets_at,
        "resets_in_seconds": max(0, math.ceil((resets - at).total_seconds())),
        "source": applied.source,
        "policy_id": applied.policy_id,
        "stored_not_held": not_held,
    }


def effective_limits_json(
    limits: dict[str, EffectiveLimit | None],
) -> dict[str, dict[str, Any] | None]:
    """`{"rpm": {"limit": 60, "source": "policy"}, "tpm": null, ...}`."""
    return {
        name: None if limit is None else {"limit": limit.limit, "source": limit.source}
        for name in RATE_LIMIT_NAMES
        for limit in [limits.get(name)]
    }


def rate_window_json(count: RateCount | None, now: float) -> dict[str, Any] | None:
    """A subject's current window: requests and tokens of the last 60 s, requests in
    flight, and the seconds until its oldest request leaves it (null when empty)."""
    if count is None:
        return None
    resets = (
        None
        if count.oldest is None
        else max(0, math.ceil(count.oldest + RATE_WINDOW_SECONDS - now))
    )
    return {
        "requests": count.requests,
        "tokens": count.tokens,
        "parallel": count.parallel,
        "resets_in_seconds": resets,
    }


_LIMIT_LABELS = {"rpm": "rpm", "tpm": "tpm", "max_parallel": "max parallel"}
_SOURCE_LABELS = {"store": "stored", "policy": "policy file"}


def budget_source_text(shown: dict[str, Any]) -> str:
    """`stored`, `policy file`, or `policy file budget monthly`."""
    if shown["source"] == "store":
        return "stored"
    return "policy file" + (f" budget {shown['policy_id']}" if shown["policy_id"] else "")


class ControlsReader(BudgetReader, Protocol):
    """What showing the controls reads (a Store, or the audited admin wrapper)."""

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState: ...


async def shown_controls(
    store: ControlsReader,
    query: ControlsQuery | None,
    key: ApiKey | None,
    project: Project,
    at: datetime,
    zone: ZoneInfo,
    problem: str = "the policy does not define data.gateway.effective_controls",
) -> dict[str, Any]:
    """The controls that apply to `key` and its `project` (or to `project` alone, `key`
    None) at `at`, as `keys show` / `projects show` and the admin API answer them: each
    budget with its window and reset and where it comes from, each rate limit with its
    source, the rate windows now. One shape for the CLI and the admin API."""
    controls = effective_controls(query, key, project, rfc3339(at), problem)
    windows = await store.rate_windows("" if key is None else key.id, project.id, at.timestamp())
    shown: dict[str, Any] = {}
    if key is not None:
        shown.update(
            period_budget=await effective_budget_json(
                store, "key", key.id, controls.key_budget, key.budget, at, zone
            ),
            effective_rate_limits=effective_limits_json(controls.key_limits),
            rate_window=rate_window_json(windows.key, at.timestamp()),
        )
    project_budget = await effective_budget_json(
        store, "project", project.id, controls.project_budget, project.budget, at, zone
    )
    project_limits = effective_limits_json(controls.project_limits)
    project_window = rate_window_json(windows.project, at.timestamp())
    if key is None:
        shown.update(
            period_budget=project_budget,
            effective_rate_limits=project_limits,
            rate_window=project_window,
        )
    else:
        shown.update(
            project_period_budget=project_budget,
            project_effective_rate_limits=project_limits,
            project_rate_window=project_window,
        )
    shown["controls_problem"] = controls.policy_problem
    return shown


def controls_text(shown: dict[str, Any], project_id: str | None = None) -> str:
    """The lines `keys show` / `projects show` print under the record's own line:
    `shown_controls` for people. `project_id`: set when `shown` is a key's, to show its
    project's controls too."""
    lines: list[str] = []

    def budget(prefix: str, window: dict[str, Any] | None) -> None:
        if window is None:
            lines.append(f"{prefix}budget: none")
            return
        lines.append(
            f"{prefix}budget {window['budget']} ({budget_source_text(window)}): "
            f"{window['usage']} used in the window from {window['window_start']} "
            f"({window['reserved']} in flight), resets at {window['resets_at']} "
            f"(in {duration_text(window['resets_in_seconds'])})"
        )
        if window["stored_not_held"]:
            lines.append(
                f"{prefix}stored budget {window['stored_not_held']} is not held: a policy "
                "file's budget of another period applies instead"
            )

    def rates(prefix: str, limits: dict[str, Any], window: dict[str, Any] | None) -> None:
        shown_limits = [
            f"{_LIMIT_LABELS[name]} {limit['limit']} ({_SOURCE_LABELS[limit['source']]})"
            for name in RATE_LIMIT_NAMES
            if (limit := limits.get(name)) is not None
        ]
        if not shown_limits:
            lines.append(f"{prefix}rate limits: none")
            return
        text = f"{prefix}rate limits: {', '.join(shown_limits)}"
        if window is not None:
            text += (
                f"; last 60 s: {window['requests']} requests, {window['tokens']} tokens, "
                f"{window['parallel']} in flight"
            )
            if window["resets_in_seconds"] is not None:
                text += f"; the oldest leaves the window in {window['resets_in_seconds']} s"
        lines.append(text)

    budget("", shown["period_budget"])
    rates("", shown["effective_rate_limits"], shown["rate_window"])
    if project_id is not None:
        budget(f"project {project_id} ", shown["project_period_budget"])
        rates(
            f"project {project_id} ",
            shown["project_effective_rate_limits"],
            shown["project_rate_window"],
        )
    if shown["controls_problem"]:
        lines.append(f"(stored controls only: {shown['controls_problem']})")
    return "".join(f"\n{line}" for line in lines)


def duration_text(seconds: float) -> str:
    """`2 d 3 h`, `3 h 12 min`, `12 min`, `less than a minute`."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min" if mins else "less than a minute"
