"""Period budgets on the key and project pages: the budget, the current window's usage
and the time to its reset, and the form that sets or clears it.

The window is the one requests see: the gateway's own clock and `budget_time_zone`
(from the app's state; UTC and the wall clock when the dashboard runs without them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from litestar import Request, Response, post

from proxy.budget_facts import BudgetReader, current_window, parse_time
from proxy.budgets import Budget, format_budget, rfc3339
from proxy.dashboard.actions import run_form_action
from proxy.dashboard.context import DashboardContext
from proxy.dashboard.forms import field, usd, usd_exact
from proxy.effective_controls import (
    EffectiveBudget,
    EffectiveControls,
    duration_text,
    effective_controls,
)
from proxy.store.base import ApiKey, Project
from proxy.store.common import check_budget

__all__ = ["budget_view", "page_controls", "set_key_budget", "set_project_budget"]

AnyRequest = Request[Any, Any, Any]


def _now_and_zone(request: AnyRequest) -> tuple[datetime, ZoneInfo]:
    state = request.app.state
    clock: Callable[[], str] | None = getattr(state, "budget_clock", None)
    zone: ZoneInfo = getattr(state, "budget_zone", None) or ZoneInfo("UTC")
    return (parse_time(clock()) if clock else datetime.now(UTC)), zone


def page_controls(request: AnyRequest, key: ApiKey | None, project: Project) -> EffectiveControls:
    """The controls that apply to `key` (None: `project` alone), as the serving policy
    answers (`data.gateway.effective_controls`), at the gateway's clock."""
    holder = getattr(request.app.state, "policy", None)
    query = None if holder is None else holder.current.controls
    now, _zone = _now_and_zone(request)
    return effective_controls(
        query, key, project, rfc3339(now), "no policy is loaded where the dashboard runs"
    )


async def budget_view(
    request: AnyRequest,
    store: BudgetReader,
    owner: Literal["key", "project"],
    owner_id: str,
    budget: Budget | None,
    applied: EffectiveBudget | None,
) -> dict[str, Any]:
    """What the budget card shows: the stored budget as typed (the form's value), and
    the budget that applies (`applied`: stored, or a policy file's), where it comes
    from and its current window."""
    now, zone = _now_and_zone(request)
    held = None if applied is None else applied.budget
    window = await current_window(store, owner, owner_id, held, now, zone)
    view: dict[str, Any] = {
        "input": "" if budget is None else format_budget(budget),
        "source": None,
        "stored_note": None,
    }
    if applied is not None:
        view["source"] = (
            "stored here"
            if applied.source == "store"
            else "set by a policy file"
            + (f" (budget `{applied.policy_id}`)" if applied.policy_id else "")
        )
        if budget is not None and applied.source == "policy":
            view["stored_note"] = (
                f"The stored budget {format_budget(budget)} is not held: a policy file's "
                "budget of another period applies instead."
                if budget.period != applied.budget.period
                else f"The stored budget {format_budget(budget)} is looser than the policy "
                "file's, which applies."
            )
    if window is not None:
        spent = window.usage >= window.amount
        view.update(
            amount=usd(window.amount),
            period=window.period,
            usage=usd(window.usage),
            usage_exact=usd_exact(window.usage),
            reserved=usd(window.reserved),
            window_start=window.window_start,
            resets_at=window.resets_at,
            resets_in=duration_text((parse_time(window.resets_at) - now).total_seconds()),
            spent=spent,
            percent=100 if spent or not window.amount else int(window.usage * 100 / window.amount),
        )
    return view


async def _set(
    request: AnyRequest,
    dashboard: DashboardContext,
    owner: Literal["key", "project"],
    owner_id: str,
) -> Response[Any]:
    form = await request.form()
    text = field(form, "budget")

    async def change() -> object:
        budget = check_budget(text or "none", "Budget")
        store = dashboard.store(request)
        if owner == "key":
            return await store.set_key_budget(owner_id, budget)
        return await store.set_project_budget(owner_id, budget)

    path = f"/keys/{owner_id}" if owner == "key" else f"/projects/{owner_id}"
    listing = "/keys" if owner == "key" else "/projects"
    return await run_form_action(
        request, dashboard, change, dashboard.url(path), dashboard.url(listing)
    )


@post("/keys/{key_id:str}/budget", status_code=303)
async def set_key_budget(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    return await _set(request, dashboard, "key", key_id)


@post("/projects/{project_id:str}/budget", status_code=303)
async def set_project_budget(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    return await _set(request, dashboard, "project", project_id)
