"""The API Keys dashboard: a small server-rendered web UI mounted at `/dashboard`.

How the proxy mounts it (only when `GATEWAY_ADMIN_TOKEN` is set), simplest form::

    from proxy.dashboard import DashboardPlugin

    plugins = [DashboardPlugin(config.admin_token)] if config.admin_token else []
    app = Litestar(..., plugins=plugins)

The plugin adds the router at `/dashboard`, reads the Store from `app.state.store`,
and feeds Activity from the proxy's `gateway.decision` log lines for the app's
lifetime. The same by hand::

    decision_log = InMemoryDecisionLog()     # or feed it: decision_log.record(LoggedDecision(...))
    dashboard = build_dashboard(
        store_provider=lambda request: request.app.state.store,   # the app's one Store
        admin_token=config.admin_token,
        decision_log=decision_log,
    )
    app = Litestar(route_handlers=[..., dashboard],
                   lifespan=[..., lambda app: feeding_decision_log(decision_log)])

The router brings its own templates (Jinja2, rendered here, so the app needs no
`template_config`), static files, session and CSRF handling. Every change goes
through the `Store` methods the CLI and the admin HTTP API use.
"""

from proxy.dashboard.builder import ROUTE_HANDLERS, build_dashboard
from proxy.dashboard.context import StoreProvider
from proxy.dashboard.decision_log import (
    DailyUsage,
    DecisionLogReader,
    InMemoryDecisionLog,
    LoggedDecision,
)
from proxy.dashboard.feed import feeding_decision_log
from proxy.dashboard.plugin import DashboardPlugin, store_from_app_state

__all__ = [
    "ROUTE_HANDLERS",
    "DailyUsage",
    "DashboardPlugin",
    "DecisionLogReader",
    "InMemoryDecisionLog",
    "LoggedDecision",
    "StoreProvider",
    "build_dashboard",
    "feeding_decision_log",
    "store_from_app_state",
]
