"""The API Keys pages: list, create (token shown once), status, limit, IAM rules, activity.

Every change goes through the same `Store` methods the CLI and the admin API call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get, post

from proxy.audit import AuditedAdmin
from proxy.dashboard.actions import run_form_action
from proxy.dashboard.budget_views import budget_view, page_controls
from proxy.dashboard.context import DashboardContext
from proxy.dashboard.forms import (
    RULE_TYPES,
    FormError,
    field,
    key_row,
    parse_rule_status,
    parse_rule_values,
    parse_usd,
    usd,
    usd_exact,
)
from proxy.dashboard.rate_views import rate_facts, request_time
from proxy.dashboard.usage_chart import daily_usage_svg
from proxy.key_activity import ActivityRecorder
from proxy.store.base import KeyActivity, NotFound, StoreError
from proxy.store.common import parse_grace

__all__ = [
    "add_rule",
    "confirm_delete",
    "create_key",
    "delete_key",
    "list_keys",
    "remove_rule",
    "rename_key",
    "rotate_key",
    "set_expiry",
    "set_limit",
    "set_rule_status",
    "set_status",
    "show_key",
]

AnyRequest = Request[Any, Any, Any]
ACTIVITY_ROWS = 20
CHART_DAYS = 14


async def _act(
    request: AnyRequest,
    dashboard: DashboardContext,
    back: str,
    action: Callable[[], Awaitable[object]],
) -> Response[Any]:
    """Run one store action; on success go back (303), on a refusal explain it."""
    return await run_form_action(request, dashboard, action, back, dashboard.url("/keys"))


async def _activity(
    request: AnyRequest, store: AuditedAdmin, key_ids: list[str] | None
) -> dict[str, KeyActivity]:
    """The keys' activity, this instance's latest counts included (when served by the
    gateway app, which records them)."""
    recorder: ActivityRecorder | None = getattr(request.app.state, "activity", None)
    if recorder is not None:
        await recorder.flush()
    return await store.key_activity(key_ids)


@get("/keys")
async def list_keys(
    request: AnyRequest, dashboard: DashboardContext, project: str | None = None
) -> Response[str]:
    store = dashboard.store(request)
    projects = await store.list_projects()
    shown = [p for p in projects if project in (None, "", p.id)]
    keys = await store.list_keys(project or None)
    activity = await _activity(request, store, None)
    sections = [
        {
            "project": p,
            "rows": [key_row(k, activity.get(k.id)) for k in keys if k.project_id == p.id],
        }
        for p in shown
    ]
    return dashboard.render(
        request,
        "keys.html",
        {"sections": sections, "projects": projects, "selected_project": project or ""},
    )


@post("/keys", status_code=200)
async def create_key(request: AnyRequest, dashboard: DashboardContext) -> Response[Any]:
    form = await request.form()
    back = dashboard.url("/keys")
    try:
        limit = parse_usd(field(form, "usage_limit"), "Usage limit", allow_empty=True)
        key, token = await dashboard.store(request).create_key(
            field(form, "project"), limit, field(form, "description")
        )
    except (FormError, StoreError) as error:
        return dashboard.error(request, str(error), back=back)
    # INVARIANT: the plain token exists only in this one response body.
    return dashboard.render(
        request, "key_created.html", {"key": key_row(key), "token": token, "rotated": False}
    )


@get("/keys/{key_id:str}")
async def show_key(request: AnyRequest, dashboard: DashboardContext, key_id: str) -> Response[str]:
    store = dashboard.store(request)
    try:
        key = await store.get_key(key_id)
        rules = await store.list_rules(key_id)
    except NotFound as error:
        return dashboard.error(request, str(error), back=dashboard.url("/keys"), status_code=404)
    windows = await store.rate_windows(key.id, key.project_id, request_time(request))
    controls = page_controls(request, key, await store.get_project(key.project_id))
    recent = await dashboard.decision_log.recent(key_id, ACTIVITY_ROWS)
    daily = await dashboard.decision_log.daily_usage(key_id, CHART_DAYS)
    return dashboard.render(
        request,
        "key.html",
        {
            "key": key_row(key, (await _activity(request, store, [key.id])).get(key.id)),
            "rules": rules,
            "rule_types": RULE_TYPES,
            "recent": recent,
            "usd": usd,
            "usd_exact": usd_exact,
            "chart": daily_usage_svg(daily),
            "costs_reported": any(entry.cost is not None for entry in recent),
            "chart_days": CHART_DAYS,
            "rates": rate_facts(key.rate_limits, windows.key, controls.key_limits),
            "budget": await budget_view(
                request, store, "key", key.id, key.budget, controls.key_budget
            ),
            "controls_problem": controls.policy_problem,
            "budget_action": dashboard.url(f"/keys/{key.id}/budget"),
        },
    )


@post("/keys/{key_id:str}/status", status_code=303)
async def set_status(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    form = await request.form()
    status = field(form, "status")
    back = dashboard.url("/keys" if field(form, "next") == "list" else f"/keys/{key_id}")

    async def change() -> object:
        if (await dashboard.store(request).get_key(key_id)).status == "deleted":
            raise FormError("This key was deleted, which is permanent; create a new key instead.")
        if status == "active":
            return await dashboard.store(request).set_key_status(key_id, "active")
        if status == "inactive":
            return await dashboard.store(request).set_key_status(key_id, "inactive")
        raise FormError(f"Status: `{status}` is not one of `active`, `inactive`.")

    return await _act(request, dashboard, back, change)


@get("/keys/{key_id:str}/delete")
async def confirm_delete(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[str]:
    try:
        key = await dashboard.store(request).get_key(key_id)
    except NotFound as error:
        return dashboard.error(request, str(error), back=dashboard.url("/keys"), status_code=404)
    return dashboard.render(request, "confirm_delete.html", {"key": key_row(key)})


@post("/keys/{key_id:str}/delete", status_code=303)
async def delete_key(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    form = await request.form()
    back = dashboard.url("/keys")

    async def delete() -> object:
        if field(form, "confirm") != "delete":
            raise FormError("Deleting is permanent: tick the confirmation box to delete the key.")
        return await dashboard.store(request).set_key_status(key_id, "deleted")

    return await _act(request, dashboard, back, delete)


@post("/keys/{key_id:str}/limit", status_code=303)
async def set_limit(request: AnyRequest, dashboard: DashboardContext, key_id: str) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        limit = parse_usd(field(form, "usage_limit"), "Usage limit", allow_empty=True)
        return await dashboard.store(request).set_usage_limit(key_id, limit)

    return await _act(request, dashboard, dashboard.url(f"/keys/{key_id}"), change)


@post("/keys/{key_id:str}/description", status_code=303)
async def rename_key(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        return await dashboard.store(request).rename_key(key_id, field(form, "description"))

    return await _act(request, dashboard, dashboard.url(f"/keys/{key_id}"), change)


@post("/keys/{key_id:str}/expiry", status_code=303)
async def set_expiry(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        return await dashboard.store(request).set_key_expiry(
            key_id, field(form, "expires_at") or None
        )

    return await _act(request, dashboard, dashboard.url(f"/keys/{key_id}"), change)


@post("/keys/{key_id:str}/rotate", status_code=200)
async def rotate_key(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    form = await request.form()
    back = dashboard.url(f"/keys/{key_id}")
    try:
        key, token = await dashboard.store(request).rotate_key(
            key_id, parse_grace(field(form, "grace_seconds") or "0")
        )
    except StoreError as error:
        return dashboard.error(request, str(error), back=back)
    # INVARIANT: the plain token exists only in this one response body.
    return dashboard.render(
        request, "key_created.html", {"key": key_row(key), "token": token, "rotated": True}
    )


@post("/keys/{key_id:str}/rules", status_code=303)
async def add_rule(request: AnyRequest, dashboard: DashboardContext, key_id: str) -> Response[Any]:
    form = await request.form()

    async def add() -> object:
        rule_type, values = parse_rule_values(field(form, "type"), field(form, "values"))
        return await dashboard.store(request).add_rule(key_id, rule_type, values)

    return await _act(request, dashboard, dashboard.url(f"/keys/{key_id}"), add)


@post("/keys/{key_id:str}/rules/{rule_id:str}/remove", status_code=303)
async def remove_rule(
    request: AnyRequest, dashboard: DashboardContext, key_id: str, rule_id: str
) -> Response[Any]:
    async def remove() -> object:
        await dashboard.store(request).remove_rule(key_id, rule_id)
        return None

    return await _act(request, dashboard, dashboard.url(f"/keys/{key_id}"), remove)


@post("/keys/{key_id:str}/rules/{rule_id:str}/status", status_code=303)
async def set_rule_status(
    request: AnyRequest, dashboard: DashboardContext, key_id: str, rule_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        status = parse_rule_status(field(form, "status"))
        return await dashboard.store(request).set_rule_status(key_id, rule_id, status)

    return await _act(request, dashboard, dashboard.url(f"/keys/{key_id}"), change)
