"""What every dashboard handler needs, built once by `build_dashboard` and injected."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from litestar import Request, Response
from litestar.enums import MediaType

from proxy.audit import Actor, AuditedAdmin
from proxy.dashboard.decision_log import DecisionLogReader
from proxy.dashboard.session import Session, SessionSigner
from proxy.forwarded import client_address
from proxy.store.base import Store
from proxy.throttle import FailedAttempts

__all__ = ["SESSION_STATE_KEY", "DashboardContext", "StoreProvider", "page_headers"]

AnyRequest = Request[Any, Any, Any]
StoreProvider = Callable[[AnyRequest], Store]
SESSION_STATE_KEY = "dashboard_session"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

# Why these headers: pages may show a freshly created token (never cache them), and
# the dashboard loads nothing from elsewhere (tight CSP, no framing).
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_headers() -> dict[str, str]:
    return dict(_PAGE_HEADERS)


class DashboardContext:
    """The store, the session signer, the decision log, failed sign-ins and the templates
    of one mount."""

    def __init__(
        self,
        store_provider: StoreProvider,
        signer: SessionSigner,
        decision_log: DecisionLogReader,
        prefix: str,
        sign_in_attempts: FailedAttempts | None = None,
    ) -> None:
        self.store_provider = store_provider
        self.signer = signer
        self.decision_log = decision_log
        self.sign_in_attempts = sign_in_attempts or FailedAttempts()
        self.prefix = prefix.rstrip("/")
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def store(self, request: AnyRequest) -> AuditedAdmin:
        """The app's store; every change through it is audited as the dashboard's."""
        actor = Actor(kind="dashboard", client=client_address(request))
        return AuditedAdmin(self.store_provider(request), actor)

    def url(self, path: str) -> str:
        return f"{self.prefix}{path}"

    def render(
        self,
        request: AnyRequest,
        template: str,
        context: Mapping[str, Any],
        status_code: int = 200,
    ) -> Response[str]:
        session: Session | None = request.state.get(SESSION_STATE_KEY)
        html = self._templates.get_template(template).render(
            prefix=self.prefix,
            csrf_token=session.csrf_token if session else "",
            signed_in=session is not None,
            **context,
        )
        return Response(
            content=html,
            status_code=status_code,
            media_type=MediaType.HTML,
            headers=page_headers(),
        )

    def error(
        self, request: AnyRequest, message: str, back: str, status_code: int = 400
    ) -> Response[str]:
        """A page explaining why an action failed, with a link back to where it came from."""
        return self.render(
            request, "error.html", {"message": message, "back": back}, status_code=status_code
        )
