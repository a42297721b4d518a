"""The period-budget facts of one request: which windows it falls in, and their figures.

The gateway reads the time once per request (its injectable clock, the input
document's `request.time`); the same instant picks the windows the policy is shown
and the windows the request's claim holds room in, so the policy's answer and the
store's admission always talk about the same windows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec

from proxy.budgets import Budget, Period, format_budget, rfc3339, window
from proxy.documents import PeriodBudgetDocument
from proxy.input_document import EngineMembers, engine_members
from proxy.money import money_text
from proxy.store.base import BudgetWindow, Claim, KeyContext, WindowUsage


class BudgetReader(Protocol):
    """What reading a window's figures needs (a Store, or the audited admin wrapper)."""

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]: ...


__all__ = [
    "NO_BUDGETS",
    "BudgetFacts",
    "BudgetReader",
    "KnownFacts",
    "RequestWindows",
    "WindowSubjects",
    "WindowTimes",
    "budget_facts",
    "budget_json",
    "current_window",
    "facts_of",
    "parse_time",
    "request_windows",
    "window_subjects",
    "with_budgets",
]


class _Window(msgspec.Struct, frozen=True, kw_only=True):
    budget: Budget
    start: str
    end: str


class BudgetFacts(msgspec.Struct, frozen=True, kw_only=True):
    """The key's and the project's budget documents (None: no budget) and windows."""

    key: PeriodBudgetDocument | None = None
    project: PeriodBudgetDocument | None = None
    key_window: BudgetWindow | None = None
    project_window: BudgetWindow | None = None


NO_BUDGETS = BudgetFacts()


def parse_time(text: str) -> datetime:
    """The gateway clock's RFC 3339 text (`2027-01-01T00:00:00Z`) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _window(budget: Budget | None, at: datetime, zone: ZoneInfo) -> _Window | None:
    if budget is None:
        return None
    start, end = window(budget.period, at, zone)
    return _Window(budget=budget, start=rfc3339(start), end=rfc3339(end))


class WindowTimes:
    """The calendar windows of the request clock's current second, per period, in the
    gateway's zone: the clock reads whole seconds, so every request of a second asks
    for the same windows, and working them out (parse, zone arithmetic, formatting)
    was a visible share of a budgeted request (bench.profile_gateway --controls).
    One per gateway; it keeps one second's windows."""

    __slots__ = ("_time", "_windows", "zone")

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._time = ""
        self._windows: dict[Period, tuple[str, str]] = {}

    def window(self, budget: Budget | None, time: str) -> _Window | None:
        """`budget`'s window holding the instant `time` (RFC 3339); None without one."""
        if budget is None:
            return None
        if time != self._time:
            self._time = time
            self._windows = {}
        known = self._windows.get(budget.period)
        if known is None:
            start, end = window(budget.period, parse_time(time), self.zone)
            known = self._windows[budget.period] = (rfc3339(start), rfc3339(end))
        return _Window(budget=budget, start=known[0], end=known[1])


def _document(current: _Window | None, figures: WindowUsage) -> PeriodBudgetDocument | None:
    if current is None:
        return None
    return PeriodBudgetDocument(
        amount=current.budget.amount,
        period=current.budget.period,
        usage=figures.usage,
        reserved=figures.reserved,
        window_start=current.start,
        resets_at=current.end,
    )


def _claimed(current: _Window | None) -> BudgetWindow | None:
    return (
        None if current is None else BudgetWindow(amount=current.budget.amount, start=current.start)
    )


RequestWindows = tuple[_Window | None, _Window | None]
"""The key's and the project's budget windows of one request (None: no budget)."""

WindowSubjects = tuple[tuple[str, str] | None, tuple[str, str] | None]
"""Whose window figures to read: (key id, window start), (project id, window start)."""


def request_windows(
    context: KeyContext | None,
    time: str,
    windows: WindowTimes,
    policy: tuple[Budget | None, Budget | None] | None = None,
) -> RequestWindows | None:
    """The budget windows of the key and its project holding `time` (RFC 3339); None
    when neither has a budget (then no figures are read at all). `policy`: as in
    `budget_facts`."""
    if context is None:
        return None
    key_budget, project_budget = (
        (context.key.budget, context.project.budget) if policy is None else policy
    )
    if key_budget is None and project_budget is None:
        return None
    return windows.window(key_budget, time), windows.window(project_budget, time)


def window_subjects(context: KeyContext, current: RequestWindows) -> WindowSubjects:
    """The figures `current` needs, as a store's `budget_usage` takes them."""
    key_window, project_window = current
    return (
        None if key_window is None else (context.key.id, key_window.start),
        None if project_window is None else (context.project.id, project_window.start),
    )


def facts_of(current: RequestWindows, figures: tuple[WindowUsage, WindowUsage]) -> BudgetFacts:
    """The request's budget facts: its windows with their figures."""
    key_window, project_window = current
    return BudgetFacts(
        key=_document(key_window, figures[0]),
        project=_document(project_window, figures[1]),
        key_window=_claimed(key_window),
        project_window=_claimed(project_window),
    )


async def budget_facts(
    store: BudgetReader,
    context: KeyContext | None,
    time: str,
    windows: WindowTimes,
    policy: tuple[Budget | None, Budget | None] | None = None,
) -> BudgetFacts:
    """The budgets of the key and its project at `time` (RFC 3339), with the current
    windows' figures read from the store (no read at all when neither has a budget).
    `policy`: the budgets that apply to this key and project as the policy decided
    (`data.gateway.effective_budgets`, asked when policy files set budgets); None:
    the key store's apply."""
    current = request_windows(context, time, windows, policy)
    if current is None or context is None:
        return NO_BUDGETS
    figures = await store.budget_usage(*window_subjects(context, current))
    return facts_of(current, figures)


class _Known(msgspec.Struct, frozen=True):
    context: KeyContext
    time: str
    subjects: WindowSubjects
    figures: tuple[WindowUsage, WindowUsage]
    facts: BudgetFacts
    # The engine input's key and project members with the facts' windows.
    members: EngineMembers


_MAX_KNOWN = 4096


class KnownFacts:
    """The last budget facts made for each key, from its cached record and its windows'
    cached figures: every request of the key in the same second, served the same record
    and the same figures, gets the same facts, and making them (windows, documents,
    claimed windows) was ~15k instructions a budgeted request. The engine input's key
    and project members with those windows are kept with them (`members`: converting
    the windows and copying the members was ~6k a decision). Only facts of the key
    store's budgets are kept (policy files' budgets depend on the request). One per
    gateway."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[str, _Known] = {}

    def last(self, context: KeyContext, time: str) -> _Known | None:
        """The facts made for this very record at `time`, with the figures they used
        (the caller checks these are still the ones held); None: none kept."""
        known = self._known.get(context.key.id)
        if known is None or known.context is not context or known.time != time:
            return None
        return known

    def keep(
        self,
        context: KeyContext,
        time: str,
        subjects: WindowSubjects,
        figures: tuple[WindowUsage, WindowUsage],
        facts: BudgetFacts,
    ) -> None:
        known = self._known
        if context.key.id not in known and len(known) >= _MAX_KNOWN:
            del known[next(iter(known))]
        members = engine_members(context, facts.key, facts.project)
        known[context.key.id] = _Known(context, time, subjects, figures, facts, members)

    def members(self, context: KeyContext, facts: BudgetFacts) -> EngineMembers | None:
        """The engine input's members kept with `facts` for this very record; None when
        `facts` are not the ones kept for it (`engine_document` makes them then)."""
        known = self._known.get(context.key.id)
        if known is None or known.facts is not facts or known.context is not context:
            return None
        return known.members


def with_budgets(claim: Claim, context: KeyContext, facts: BudgetFacts) -> Claim:
    """`claim` holding room in the request's budget windows (those of `facts`, and no
    others); `claim` itself when it holds them already (made with them)."""
    if facts.key_window is claim.key_budget and facts.project_window is claim.project_budget:
        return claim
    return msgspec.structs.replace(
        claim,
        key_budget=facts.key_window,
        project_id=context.project.id if facts.project_window is not None else claim.project_id,
        project_budget=facts.project_window,
    )


async def current_window(
    store: BudgetReader,
    owner: Literal["key", "project"],
    owner_id: str,
    budget: Budget | None,
    at: datetime,
    zone: ZoneInfo,
) -> PeriodBudgetDocument | None:
    """A key's or a project's budget with its window holding `at` (for the CLI, the
    admin API and the dashboard); None without a budget."""
    current = _window(budget, at, zone)
    if current is None:
        return None
    subject = (owner_id, current.start)
    key_figures, project_figures = await store.budget_usage(
        subject if owner == "key" else None, subject if owner == "project" else None
    )
    return _document(current, key_figures if owner == "key" else project_figures)


def budget_json(document: PeriodBudgetDocument | None) -> dict[str, Any] | None:
    """The budget and its current window as JSON (money as decimal strings)."""
    if document is None:
        return None
    budget = Budget(amount=document.amount, period=document.period)
    return {
        "budget": format_budget(budget),
        "amount": money_text(document.amount),
        "period": document.period,
        "usage": money_text(document.usage),
        "reserved": money_text(document.reserved),
        "window_start": document.window_start,
        "resets_at": document.resets_at,
    }
