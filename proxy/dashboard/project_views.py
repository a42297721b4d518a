"""The Project page: mode, provider keys (never shown back in full), organization credits.

Every change goes through the same `Store` methods the CLI and the admin API call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from proxy.dashboard.context import DashboardContext, page_headers
from proxy.dashboard.forms import FormError, field, mask_secret, parse_usd, usd
from proxy.store.base import NotFound, ProjectMode, StoreError

__all__ = [
    "MODE_EXPLANATIONS",
    "list_projects",
    "remove_provider_key",
    "set_credits",
    "set_mode",
    "set_provider_key",
    "show_project",
]

AnyRequest = Request[Any, Any, Any]

# One line each, from the documentation users follow ("Project Modes").
MODE_EXPLANATIONS: dict[ProjectMode, str] = {
    "api-keys": (
        "Requires provider API keys to be configured in your project settings. "
        "The gateway uses your provider keys to make requests."
    ),
    "credits": (
        "Uses LLM Gateway's shared pool of provider keys. "
        "Requests are billed against your account credits."
    ),
    "hybrid": (
        "Attempts to use your provider API keys first, "
        "then falls back to credits if no key is configured."
    ),
}


async def _act(
    request: AnyRequest,
    dashboard: DashboardContext,
    project_id: str,
    action: Callable[[], Awaitable[object]],
) -> Response[Any]:
    back = dashboard.url(f"/projects/{project_id}")
    try:
        await action()
    except FormError as error:
        return dashboard.error(request, str(error), back=back)
    except NotFound as error:
        return dashboard.error(
            request, str(error), back=dashboard.url("/projects"), status_code=404
        )
    except StoreError as error:
        return dashboard.error(request, str(error), back=back)
    return Redirect(back, status_code=303, headers=page_headers())


@get("/projects")
async def list_projects(request: AnyRequest, dashboard: DashboardContext) -> Response[str]:
    projects = await dashboard.store(request).list_projects()
    return dashboard.render(request, "projects.html", {"projects": projects})


@get("/projects/{project_id:str}")
async def show_project(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[str]:
    store = dashboard.store(request)
    try:
        project = await store.get_project(project_id)
        organization = await store.get_organization(project.organization_id)
    except NotFound as error:
        return dashboard.error(
            request, str(error), back=dashboard.url("/projects"), status_code=404
        )
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
            "credits_input": f"{organization.credits:f}",
            "modes": MODE_EXPLANATIONS,
            "provider_keys": provider_keys,
        },
    )


@post("/projects/{project_id:str}/mode", status_code=303)
async def set_mode(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        mode = field(form, "mode")
        for known in MODE_EXPLANATIONS:
            if mode == known:
                return await dashboard.store(request).set_project_mode(project_id, known)
        raise FormError(f"Mode: `{mode}` is not one of {', '.join(MODE_EXPLANATIONS)}.")

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
