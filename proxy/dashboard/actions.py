"""Running the store change of one dashboard form: go back on success, explain a refusal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response
from litestar.response import Redirect

from proxy.dashboard.context import DashboardContext, page_headers
from proxy.dashboard.forms import FormError
from proxy.store.base import NotFound, StoreError

__all__ = ["run_form_action"]

AnyRequest = Request[Any, Any, Any]


async def run_form_action(
    request: AnyRequest,
    dashboard: DashboardContext,
    action: Callable[[], Awaitable[object]],
    back: str,
    not_found_back: str,
) -> Response[Any]:
    """Run `action`; on success go back to `back` (303). A refusal is explained with a link
    to `back`, except a missing record (404), whose page is gone: that links to
    `not_found_back`, the list it was in."""
    try:
        await action()
    except FormError as error:
        return dashboard.error(request, str(error), back=back)
    except NotFound as error:
        return dashboard.error(request, str(error), back=not_found_back, status_code=404)
    except StoreError as error:
        return dashboard.error(request, str(error), back=back)
    return Redirect(back, status_code=303, headers=page_headers())
