"""The Audit log page: every administrative change, newest first, filterable."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response, get

from proxy.dashboard.context import DashboardContext
from proxy.store.base import StoreError
from proxy.store.common import parse_expiry

__all__ = ["list_audit"]

AUDIT_ROWS = 200


@get("/audit")
async def list_audit(
    request: Request[Any, Any, Any],
    dashboard: DashboardContext,
    object: str | None = None,
    since: str | None = None,
) -> Response[str]:
    try:
        moment = parse_expiry(since, "Since") if since else None
    except StoreError as error:
        return dashboard.error(request, str(error), back=dashboard.url("/audit"))
    entries = await dashboard.store(request).list_audit(moment, object or None, AUDIT_ROWS)
    rows = [
        {
            "entry": entry,
            "before": "" if entry.before is None else json.dumps(entry.before, sort_keys=True),
            "after": "" if entry.after is None else json.dumps(entry.after, sort_keys=True),
        }
        for entry in reversed(entries)
    ]
    return dashboard.render(
        request,
        "audit.html",
        {"rows": rows, "object": object or "", "since": since or "", "limit": AUDIT_ROWS},
    )
