"""Rate limits on the dashboard (issue 13 point 2): set on the key and project pages
(through the same Store methods as the CLI), shown with the current window."""

from __future__ import annotations

import time
from decimal import Decimal

from litestar import Litestar
from litestar.testing import TestClient

from dashboard.conftest import PROJECT, csrf_of, run
from proxy.store import Store
from proxy.store.base import Admitted, Claim, RateLimits

Client = TestClient[Litestar]


def _post(client: Client, path: str, **fields: str) -> str:
    response = client.post(path, data={"csrf_token": csrf_of(client), **fields})
    assert response.status_code == 200, response.text
    return response.text


def test_key_rate_limits_set_cleared_and_their_window_shown(
    signed_in: Client, store: Store
) -> None:
    key, _ = run(store.create_key(PROJECT, None, "rated"))
    _post(signed_in, f"/dashboard/keys/{key.id}/rate-limits", rpm="60", tpm="", max_parallel="4")
    assert run(store.get_key(key.id)).rate_limits == RateLimits(rpm=60, max_parallel=4)
    limits = run(store.get_key(key.id)).rate_limits
    claim = Claim(
        key_id=key.id,
        organization_id=None,
        amount=Decimal("0.01"),
        project_id=PROJECT,
        key_limits=limits,
        tokens=120,
        now=time.time(),
    )
    assert isinstance(run(store.admit(claim, "t1")), Admitted)
    page = signed_in.get(f"/dashboard/keys/{key.id}").text
    assert "60 requests/min, 4 in parallel" in page
    assert "1 requests and 120 tokens in the last 60 s, 1 in flight" in page
    assert 'name="rpm" inputmode="numeric" value="60"' in page
    bad = signed_in.post(
        f"/dashboard/keys/{key.id}/rate-limits",
        data={"csrf_token": csrf_of(signed_in), "rpm": "0"},
    )
    assert bad.status_code == 400 and "Requests per minute: `0` is not a whole number" in bad.text
    _post(signed_in, f"/dashboard/keys/{key.id}/rate-limits", rpm="", tpm="", max_parallel="")
    assert run(store.get_key(key.id)).rate_limits == RateLimits()


def test_project_rate_limits(signed_in: Client, store: Store) -> None:
    _post(signed_in, f"/dashboard/projects/{PROJECT}/rate-limits", rpm="", tpm="50000")
    assert run(store.get_project(PROJECT)).rate_limits == RateLimits(tpm=50000)
    page = signed_in.get(f"/dashboard/projects/{PROJECT}").text
    assert "50000 tokens/min" in page
    assert "0 requests and 0 tokens in the last 60 s, 0 in flight" in page
