"""Rate limits on the key and project pages (issue 13 point 2): a form to set a key's or
a project's requests per minute, tokens per minute and parallel requests, and the
current window (requests and tokens of the last 60 s, requests in flight) to see them.

Changes go through the same `Store` methods the CLI and the admin API call (audited).
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, post

from proxy.dashboard.actions import run_form_action
from proxy.dashboard.context import DashboardContext
from proxy.dashboard.forms import FormError, field
from proxy.effective_controls import EffectiveLimit
from proxy.store.base import RateCount, RateLimits

__all__ = ["parse_rate_limits", "rate_facts", "request_time", "set_key_rates", "set_project_rates"]

AnyRequest = Request[Any, Any, Any]

_FIELDS = (
    ("rpm", "Requests per minute"),
    ("tpm", "Tokens per minute"),
    ("max_parallel", "Parallel requests"),
)


def parse_rate_limits(form: Any) -> RateLimits:
    """The three ceilings of the form; an empty field means no ceiling."""
    values: dict[str, int | None] = {}
    for name, label in _FIELDS:
        text = field(form, name)
        if not text:
            values[name] = None
            continue
        if not text.isdigit() or int(text) < 1:
            raise FormError(
                f"{label}: `{text}` is not a whole number from 1; leave it empty for no limit."
            )
        values[name] = int(text)
    return RateLimits(**values)


def rate_facts(
    limits: RateLimits,
    window: RateCount | None,
    applied: dict[str, EffectiveLimit | None] | None = None,
) -> dict[str, Any]:
    """What the page shows: the limits that apply (`applied`: stored or a policy
    file's, with where each comes from; the stored ones without it), the stored ones
    as the form's values, and the window, if counted."""
    effective = applied or {
        name: None if value is None else EffectiveLimit(limit=value, source="store")
        for name in ("rpm", "tpm", "max_parallel")
        for value in [getattr(limits, name)]
    }
    shown = [
        f"{limit.limit} {unit}" + (" (policy file)" if limit.source == "policy" else "")
        for name, unit in (
            ("rpm", "requests/min"),
            ("tpm", "tokens/min"),
            ("max_parallel", "in parallel"),
        )
        if (limit := effective.get(name)) is not None
    ]
    return {
        "limits": ", ".join(shown) or "none",
        "rpm": "" if limits.rpm is None else str(limits.rpm),
        "tpm": "" if limits.tpm is None else str(limits.tpm),
        "max_parallel": "" if limits.max_parallel is None else str(limits.max_parallel),
        "window": None
        if window is None
        else f"{window.requests} requests and {window.tokens} tokens in the last 60 s, "
        f"{window.parallel} in flight",
    }


def request_time(request: AnyRequest) -> float:
    """Now on the gateway's request clock (the windows' clock), else the wall clock."""
    gateway = getattr(request.app.state, "gateway", None)
    return float(gateway.request_epoch()) if gateway is not None else time.time()


@post("/keys/{key_id:str}/rate-limits", status_code=303)
async def set_key_rates(
    request: AnyRequest, dashboard: DashboardContext, key_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        return await dashboard.store(request).set_key_rate_limits(key_id, parse_rate_limits(form))

    back = dashboard.url(f"/keys/{key_id}")
    return await run_form_action(request, dashboard, change, back, dashboard.url("/keys"))


@post("/projects/{project_id:str}/rate-limits", status_code=303)
async def set_project_rates(
    request: AnyRequest, dashboard: DashboardContext, project_id: str
) -> Response[Any]:
    form = await request.form()

    async def change() -> object:
        limits = parse_rate_limits(form)
        return await dashboard.store(request).set_project_rate_limits(project_id, limits)

    back = dashboard.url(f"/projects/{project_id}")
    return await run_form_action(request, dashboard, change, back, dashboard.url("/projects"))
