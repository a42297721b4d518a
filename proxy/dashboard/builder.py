"""Assembles the dashboard router: handlers, the injected context, the session guard."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from proxy.dashboard.audit_views import list_audit
from proxy.dashboard.auth import session_guard, show_signin, sign_in, sign_out
from proxy.dashboard.budget_views import set_key_budget, set_project_budget
from proxy.dashboard.context import DashboardContext, StoreProvider
from proxy.dashboard.decision_log import DecisionLogReader
from proxy.dashboard.keys_views import (
    add_rule,
    confirm_delete,
    create_key,
    delete_key,
    list_keys,
    remove_rule,
    rename_key,
    rotate_key,
    set_expiry,
    set_limit,
    set_rule_status,
    set_status,
    show_key,
)
from proxy.dashboard.org_views import (
    create_organization,
    list_organizations,
    rename_organization,
)
from proxy.dashboard.pages import index, static_file
from proxy.dashboard.project_views import (
    add_project_rule,
    archive_project,
    create_project,
    list_projects,
    remove_project_rule,
    remove_provider_key,
    rename_project,
    set_credits,
    set_mode,
    set_project_rule_status,
    set_provider_key,
    show_project,
)
from proxy.dashboard.rate_views import set_key_rates, set_project_rates
from proxy.dashboard.session import SessionSigner

__all__ = ["ROUTE_HANDLERS", "build_dashboard"]

FORM_BODY_LIMIT = 64 * 1024

ROUTE_HANDLERS = [
    index,
    static_file,
    show_signin,
    sign_in,
    sign_out,
    list_keys,
    create_key,
    show_key,
    set_status,
    confirm_delete,
    delete_key,
    rotate_key,
    set_expiry,
    set_limit,
    set_key_rates,
    set_project_rates,
    set_key_budget,
    rename_key,
    add_rule,
    remove_rule,
    set_rule_status,
    list_organizations,
    create_organization,
    rename_organization,
    list_projects,
    create_project,
    show_project,
    archive_project,
    rename_project,
    add_project_rule,
    set_project_rule_status,
    remove_project_rule,
    set_mode,
    set_provider_key,
    remove_provider_key,
    set_credits,
    set_project_budget,
    list_audit,
]


def build_dashboard(
    store_provider: StoreProvider,
    admin_token: str,
    decision_log: DecisionLogReader,
    path: str = "/dashboard",
) -> Router:
    """The dashboard as one Litestar router to add to the app's `route_handlers`.

    `store_provider` returns the app's Store for a request; `admin_token` is the
    value of `GATEWAY_ADMIN_TOKEN` (must not be empty); `decision_log` is where the
    Activity section reads recent requests and daily usage.
    """
    if not admin_token:
        raise ValueError(
            "dashboard: the admin token is empty; set GATEWAY_ADMIN_TOKEN to enable the dashboard"
        )
    context = DashboardContext(store_provider, SessionSigner(admin_token), decision_log, path)
    return Router(
        path=path,
        route_handlers=ROUTE_HANDLERS,
        dependencies={"dashboard": Provide(lambda: context, sync_to_thread=False, use_cache=True)},
        before_request=session_guard(context),
        include_in_schema=False,
        # Why: the app lifts the body limit for its API routes; dashboard forms are small.
        request_max_body_size=FORM_BODY_LIMIT,
    )
