"""The Project page: mode, provider keys (never shown back in full), organization credits.

Every change goes through the same `Store` methods the CLI and the admin API call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from proxy.dashboard.actions import run_form_action
from proxy.dashboard.budget_views import budget_view, page_controls
from proxy.dashboard.context import DashboardContext, page_headers
from proxy.dashboard.forms import (
    RULE_TYPES,
    FormError,
    field,
    mask_secret,
    parse_rule_status,
    parse_rule_values,
    parse_usd,
    usd,
    usd_exact,
)
from proxy.dashboard.rate_views import rate_facts, request_time
from proxy.store.base import NotFound, ProjectMode, StoreError

__all__ = [
    "MODE_EXPLANATIONS",
    "add_project_rule",
    "archive_project",
    "create_project",
    "list_projects",
    "remove_project_rule",
    "remove_provider_key",
    "rename_project",
    "set_credits",
    "set_mode",
    "set_project_rule_status",
    "set_provider_key",
    "show_project",
]

AnyRequest = Request[Any, Any, Any]

# One line each, for this self-hosted gateway: "the gateway's credentials" are the
# `providers` of its own configuration, credits are the organization's balance here.
MODE_EXPLANATIONS: dict[ProjectMode, str] = {
    "api-keys": (
        "Uses only the provider keys set on this project (below); a provider without "
        "one is not available. Nothing is charged to the organization's credits."
    ),
    "credits": (
        "Uses the provider credentials this gateway is configured with; each request "
        "is charged to the organization's credits."
    ),
    "hybrid": (
        "Uses this project's provider key where one is set, otherwise the gateway's "
        "own credentials, charged to the organization's credits."
    ),
}


async def _act(
    request: AnyRequest,
    dashboard: DashboardContext,
    project_id: str,
    action: Callable[[], Awaitable[object]],
) -> Response[Any]:
    back = dashboard.url(f"/projects/{project_id}")
    return await run_form_action(request, dashboard, action, back, dashboard.url("/projects"))


@get("/projects")
async def list_projects(request: AnyRequest, dashboard: DashboardContext) -> Response[str]:
    store = dashboard.store(request)
    projects = await store.list_projects()
    organizations = await store.list_organizations()
    return dashboard.render(
        request,
        "projects.html",
        {"projects": projects, "organizations": organizations, "modes": MODE_EXPLANATIONS},
    )


def _mode(text: str) -> ProjectMode:
    for known in MODE_EXPLANATIONS:
        if text == known:
            return known
    raise FormError(f"Mode: `{text}` is not one of {', '.join(MODE_EXPLANATIONS)}.")


@post("/projects", status_code=303)
async def create_project(request: AnyRequest, dashboard: DashboardContext) -> Response[Any]:
    form = await request.form()
    project_id = field(form, "id")

    async def create() -> object:
        if not project_id:
            raise FormError("Project id: enter a short id such as `research`.")
        return await dashboard.store(request).create_project(
            project_id, field(form, "organization"), _mode(field(form, "mode"))
        )

    try:
        await create()
    except (FormError, StoreError) as error:
        return dashboard.error(request, str(error), back=dashboard.url("/projects"))
    return Redirect(
        dashboard.url(f"/projects/{project_id}"), status_code=303, headers=page_headers()
    )


@post("/projects/{project_id:str}/archive", status_code=303)
async def archive_project(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def archive() -> object:
        if field(form, "confirm") != "archive":
            raise FormError(
                "Archiving stops every key of the project for good: tick the box to confirm."
            )
        return await dashboard.store(request).archive_project(project_id)

    return await _act(request, dashboard, project_id, archive)


@get("/projects/{project_id:str}")
async def show_project(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[str]:
    store = dashboard.store(request)
    try:
        project = await store.get_project(project_id)
        organization = await store.get_organization(project.organization_id)
        rules = await store.list_project_rules(project_id)
    except NotFound as error:
        return dashboard.error(
            request, str(error), back=dashboard.url("/projects"), status_code=404
        )
    # The project's window; no key is named, so the key's part is empty.
    windows = await store.rate_windows("", project.id, request_time(request))
    controls = page_controls(request, None, project)
    provider_keys = [
        {"provider": provider, "shown": mask_secret(source)}
        for provider, source in sorted(project.provider_keys.items())
    ]
    return dashboard.render(
        request,
        "project.html",
        {
            "project": project,
            "organization": organization,
            "credits": usd(organization.credits),
            "credits_exact": usd_exact(organization.credits),
            "credits_input": f"{organization.credits:f}",
            "modes": MODE_EXPLANATIONS,
            "provider_keys": provider_keys,
            "rules": rules,
            "rule_types": RULE_TYPES,
            "rates": rate_facts(project.rate_limits, windows.project, controls.project_limits),
            "budget": await budget_view(
                request, store, "project", project.id, project.budget, controls.project_budget
            ),
            "controls_problem": controls.policy_problem,
            "budget_action": dashboard.url(f"/projects/{project.id}/budget"),
        },
    )


@post("/projects/{project_id:str}/mode", status_code=303)
async def set_mode(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        mode = _mode(field(form, "mode"))
        return await dashboard.store(request).set_project_mode(project_id, mode)

    return await _act(request, dashboard, project_id, change)


@post("/projects/{project_id:str}/provider-keys", status_code=303)
async def set_provider_key(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        provider, kind, value = field(form, "provider"), field(form, "source"), field(form, "value")
        if not provider:
            raise FormError("Provider: enter the provider id, such as `openai`.")
        if kind not in ("env", "value") or not value:
            raise FormError(
                "Provider key: choose where the key comes from and fill in the "
                "environment variable name or the key itself."
            )
        return await dashboard.store(request).set_provider_key(project_id, provider, {kind: value})

    return await _act(request, dashboard, project_id, change)


@post("/projects/{project_id:str}/provider-keys/{provider:str}/remove", status_code=303)
async def remove_provider_key(
    request: AnyRequest, dashboard: DashboardContext, project_id: str, provider: str
) -> Response[Any]:
    async def remove() -> object:
        return await dashboard.store(request).set_provider_key(project_id, provider, None)

    return await _act(request, dashboard, project_id, remove)


@post("/projects/{project_id:str}/credits", status_code=303)
async def set_credits(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        amount = parse_usd(field(form, "credits"), "Credits", allow_empty=False)
        assert amount is not None  # allow_empty=False never returns None
        project = await dashboard.store(request).get_project(project_id)
        return await dashboard.store(request).set_credits(project.organization_id, amount)

    return await _act(request, dashboard, project_id, change)


@post("/projects/{project_id:str}/name", status_code=303)
async def rename_project(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        return await dashboard.store(request).rename_project(project_id, field(form, "name"))

    return await _act(request, dashboard, project_id, change)


@post("/projects/{project_id:str}/rules", status_code=303)
async def add_project_rule(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def add() -> object:
        rule_type, values = parse_rule_values(field(form, "type"), field(form, "values"))
        return await dashboard.store(request).add_project_rule(project_id, rule_type, values)

    return await _act(request, dashboard, project_id, add)


@post("/projects/{project_id:str}/rules/{rule_id:str}/status", status_code=303)
async def set_project_rule_status(
    request: AnyRequest, dashboard: DashboardContext, project_id: str, rule_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        status = parse_rule_status(field(form, "status"))
        return await dashboard.store(request).set_project_rule_status(project_id, rule_id, status)

    return await _act(request, dashboard, project_id, change)


@post("/projects/{project_id:str}/rules/{rule_id:str}/remove", status_code=303)
async def remove_project_rule(
    request: AnyRequest, dashboard: DashboardContext, project_id: str, rule_id: str
) -> Response[Any]:
    async def remove() -> object:
        await dashboard.store(request).remove_project_rule(project_id, rule_id)
        return None

    return await _act(request, dashboard, project_id, remove)
