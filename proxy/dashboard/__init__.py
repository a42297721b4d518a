"""The API Keys dashboard: a small server-rendered web UI mounted at `/dashboard`.

How the proxy mounts it (only when `GATEWAY_ADMIN_TOKEN` is set)::

    from proxy.dashboard import InMemoryDecisionLog, build_dashboard

    decision_log = InMemoryDecisionLog()  # feed it: decision_log.record(LoggedDecision(...))
    dashboard = build_dashboard(
        store_provider=lambda request: request.app.state.store,   # the app's one Store
        admin_token=config.admin_token,
        decision_log=decision_log,
    )
    app = Litestar(route_handlers=[..., dashboard])

The router brings its own templates (Jinja2, rendered here, so the app needs no
`template_config`), static files, session and CSRF handling. Every change goes
through the `Store` methods the CLI and the admin HTTP API use.
"""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from proxy.dashboard.auth import session_guard, show_signin, sign_in, sign_out
from proxy.dashboard.context import DashboardContext, StoreProvider
from proxy.dashboard.decision_log import (
    DailyUsage,
    DecisionLogReader,
    InMemoryDecisionLog,
    LoggedDecision,
)
from proxy.dashboard.keys_views import (
    add_rule,
    confirm_delete,
    create_key,
    delete_key,
    list_keys,
    remove_rule,
    set_limit,
    set_status,
    show_key,
)
from proxy.dashboard.pages import index, static_file
from proxy.dashboard.project_views import (
    list_projects,
    remove_provider_key,
    set_credits,
    set_mode,
    set_provider_key,
    show_project,
)
from proxy.dashboard.session import SessionSigner

__all__ = [
    "ROUTE_HANDLERS",
    "DailyUsage",
    "DecisionLogReader",
    "InMemoryDecisionLog",
    "LoggedDecision",
    "StoreProvider",
    "build_dashboard",
]

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
    set_limit,
    add_rule,
    remove_rule,
    list_projects,
    show_project,
    set_mode,
    set_provider_key,
    remove_provider_key,
    set_credits,
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
    )
