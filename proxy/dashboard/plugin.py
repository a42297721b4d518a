"""The dashboard as one Litestar plugin: the router plus the lifespan feeding Activity."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin

from proxy.dashboard.builder import build_dashboard
from proxy.dashboard.decision_log import InMemoryDecisionLog
from proxy.dashboard.feed import feeding_decision_log
from proxy.store.base import Store

__all__ = ["DashboardPlugin", "store_from_app_state"]


def store_from_app_state(request: Request[Any, Any, Any]) -> Store:
    """The Store the proxy's lifespan put in `app.state.store`."""
    store: Store = request.app.state.store
    return store


class DashboardPlugin(InitPlugin):
    """Mounts the dashboard at `path` and feeds its Activity from the decision log lines."""

    def __init__(
        self,
        admin_token: str,
        store_provider: Callable[[Request[Any, Any, Any]], Store] = store_from_app_state,
        path: str = "/dashboard",
    ) -> None:
        self.decision_log = InMemoryDecisionLog()
        self._router = build_dashboard(store_provider, admin_token, self.decision_log, path)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(self._router)
        app_config.lifespan.append(self._feed)
        return app_config

    def _feed(self, _app: Litestar) -> AbstractAsyncContextManager[None]:
        return feeding_decision_log(self.decision_log)
