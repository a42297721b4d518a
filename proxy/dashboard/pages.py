"""The dashboard's root redirect and its two static files (served locally, no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.response import Redirect

from proxy.dashboard.context import DashboardContext, page_headers

__all__ = ["STATIC_FILES", "index", "static_file"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Why an allow-list: nothing but these two files can ever be read from disk here.
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


@get("/")
async def index(dashboard: DashboardContext) -> Redirect:
    return Redirect(dashboard.url("/keys"), status_code=303, headers=page_headers())


@get("/static/{name:str}", opt={"public": True}, sync_to_thread=False)
def static_file(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFoundException(f"no static file `{name}` in the dashboard")
    return Response(
        content=(STATIC_DIR / name).read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
