"""Sign-in, sign-out, and the hook that guards every other dashboard route.

Every route not marked `opt={"public": True}` needs a valid session (else a 303 to
the sign-in page) and every state-changing request needs the session's CSRF token
in its form (else 403). The admin token is compared in constant time, and a wrong
one gets the same answer whatever was typed. After repeated failures an address
waits before it may try again (`proxy.throttle`, 429 with `Retry-After`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect

from proxy.dashboard.context import SESSION_STATE_KEY, DashboardContext, page_headers
from proxy.dashboard.session import SESSION_COOKIE, SIGNIN_COOKIE
from proxy.forwarded import client_address

__all__ = ["session_guard", "show_signin", "sign_in", "sign_out"]

AnyRequest = Request[Any, Any, Any]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = {"public": True}
BeforeRequestHook = Callable[[AnyRequest], Awaitable[Response[Any] | None]]


def _secure(request: AnyRequest) -> bool:
    # Why: `Secure` cookies are dropped by browsers on plain http://127.0.0.1.
    return request.url.scheme == "https"


def session_guard(context: DashboardContext) -> BeforeRequestHook:
    """The before-request hook of the dashboard router."""

    async def require_session(request: AnyRequest) -> Response[Any] | None:
        # None lets the request through; a response answers instead of the handler.
        if request.route_handler.opt.get("public"):
            return None
        return await _check_session(request, context)

    return require_session


async def _check_session(request: AnyRequest, context: DashboardContext) -> Response[Any] | None:
    session = context.signer.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return Redirect(context.url("/signin"), status_code=303, headers=page_headers())
    request.state[SESSION_STATE_KEY] = session
    if request.method not in SAFE_METHODS:
        form = await request.form()
        given = form.get("csrf_token")
        if not isinstance(given, str) or not context.signer.csrf_valid(session, given):
            return context.error(
                request,
                "This form did not come from the dashboard or has expired; "
                "reload the page and submit it again.",
                back=context.url("/keys"),
                status_code=403,
            )
    return None


def _expired(name: str, context: DashboardContext, request: AnyRequest) -> Cookie:
    """Tells the browser to drop a cookie, with the same attributes it was set with."""
    return Cookie(
        key=name,
        value="",
        path=context.prefix or "/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=0,
    )


def _signin_page(
    request: AnyRequest,
    context: DashboardContext,
    failed: bool,
    status_code: int = 200,
    retry_after: int | None = None,
) -> Response[str]:
    cookie_value, form_value = context.signer.signin_nonce()
    page = {"signin_token": form_value, "failed": failed, "retry_after": retry_after}
    response = context.render(request, "signin.html", page, status_code)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    response.set_cookie(
        Cookie(
            key=SIGNIN_COOKIE,
            value=cookie_value,
            path=context.prefix or "/",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            max_age=3600,
        )
    )
    return response


@get("/signin", opt=PUBLIC, sync_to_thread=False)
def show_signin(request: AnyRequest, dashboard: DashboardContext) -> Response[str]:
    if dashboard.signer.read(request.cookies.get(SESSION_COOKIE)) is not None:
        return Redirect(dashboard.url("/keys"), status_code=303, headers=page_headers())
    return _signin_page(request, dashboard, failed=False)


@post("/signin", opt=PUBLIC, status_code=303)
async def sign_in(request: AnyRequest, dashboard: DashboardContext) -> Response[Any]:
    client = client_address(request)
    wait = dashboard.sign_in_attempts.retry_after(client)
    if wait is not None:  # nothing is checked while the address waits
        return _signin_page(request, dashboard, failed=False, status_code=429, retry_after=wait)
    form = await request.form()
    signin_token = form.get("signin_token")
    admin_token = form.get("admin_token")
    nonce_ok = isinstance(signin_token, str) and dashboard.signer.signin_nonce_valid(
        request.cookies.get(SIGNIN_COOKIE), signin_token
    )
    # Why both checks always run: the answer must not depend on which one failed.
    token_ok = isinstance(admin_token, str) and dashboard.signer.check_admin_token(admin_token)
    if not (nonce_ok and token_ok):
        dashboard.sign_in_attempts.failed(client)
        return _signin_page(request, dashboard, failed=True, status_code=401)
    dashboard.sign_in_attempts.succeeded(client)
    _session, cookie_value = dashboard.signer.issue()
    response = Redirect(dashboard.url("/keys"), status_code=303, headers=page_headers())
    response.set_cookie(
        Cookie(
            key=SESSION_COOKIE,
            value=cookie_value,
            path=dashboard.prefix or "/",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            max_age=dashboard.signer.lifetime_seconds,
        )
    )
    response.set_cookie(_expired(SIGNIN_COOKIE, dashboard, request))
    return response


@post("/signout", status_code=303)
async def sign_out(request: AnyRequest, dashboard: DashboardContext) -> Response[Any]:
    session = request.state.get(SESSION_STATE_KEY)
    if session is not None:
        dashboard.signer.revoke(session)
    response = Redirect(dashboard.url("/signin"), status_code=303, headers=page_headers())
    response.set_cookie(_expired(SESSION_COOKIE, dashboard, request))
    return response
