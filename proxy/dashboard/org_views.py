"""The Organizations page: every organization with its credits and projects; create one.

Every change goes through the same `Store` methods the CLI and the admin API call.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from proxy.dashboard.context import DashboardContext, page_headers
from proxy.dashboard.forms import FormError, field, parse_usd, usd
from proxy.store.base import NotFound, StoreError

__all__ = ["create_organization", "list_organizations", "rename_organization"]

AnyRequest = Request[Any, Any, Any]


@get("/orgs")
async def list_organizations(request: AnyRequest, dashboard: DashboardContext) -> Response[str]:
    store = dashboard.store(request)
    projects = await store.list_projects()
    rows = [
        {
            "org": org,
            "credits": usd(org.credits),
            "projects": [p for p in projects if p.organization_id == org.id],
        }
        for org in await store.list_organizations()
    ]
    return dashboard.render(request, "orgs.html", {"rows": rows})


@post("/orgs", status_code=303)
async def create_organization(request: AnyRequest, dashboard: DashboardContext) -> Response[Any]:
    form = await request.form()
    back = dashboard.url("/orgs")
    try:
        org_id = field(form, "id")
        if not org_id:
            raise FormError("Organization id: enter a short id such as `acme`.")
        credits = parse_usd(field(form, "credits"), "Credits", allow_empty=True)
        await dashboard.store(request).create_organization(
            org_id, Decimal(0) if credits is None else credits
        )
    except (FormError, StoreError) as error:
        return dashboard.error(request, str(error), back=back)
    return Redirect(back, status_code=303, headers=page_headers())


@post("/orgs/{org_id:str}/name", status_code=303)
async def rename_organization(
    request: AnyRequest, dashboard: DashboardContext, org_id: str
) -> Response[Any]:
    form = await request.form()
    back = dashboard.url("/orgs")
    try:
        await dashboard.store(request).rename_organization(org_id, field(form, "name"))
    except NotFound as error:
        return dashboard.error(request, str(error), back=back, status_code=404)
    except StoreError as error:
        return dashboard.error(request, str(error), back=back)
    return Redirect(back, status_code=303, headers=page_headers())
