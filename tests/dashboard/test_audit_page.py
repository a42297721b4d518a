"""The dashboard's changes are audited as the dashboard's, and the Audit log page lists them
(issue 13, point 4), never with a token."""

from __future__ import annotations

from decimal import Decimal

from litestar import Litestar
from litestar.testing import TestClient

from dashboard.conftest import PROJECT, csrf_of, run
from proxy.store import Store

Client = TestClient[Litestar]


def test_dashboard_changes_appear_once_in_the_audit_log_page(
    signed_in: Client, store: Store
) -> None:
    created = signed_in.post(
        "/dashboard/keys",
        data={"csrf_token": csrf_of(signed_in), "project": PROJECT, "description": "audited"},
    )
    key = run(store.list_keys(PROJECT))[0]
    token = created.text.split('value="llmgtwy_', 1)[1].split('"', 1)[0]
    signed_in.post(
        f"/dashboard/keys/{key.id}/limit",
        data={"csrf_token": csrf_of(signed_in), "usage_limit": "3.50"},
        follow_redirects=False,
    )
    rotated = signed_in.post(
        f"/dashboard/keys/{key.id}/rotate",
        data={"csrf_token": csrf_of(signed_in), "grace_seconds": "60"},
    )
    assert rotated.status_code == 200 and "New token for this API key" in rotated.text
    signed_in.post(
        f"/dashboard/keys/{key.id}/expiry",
        data={"csrf_token": csrf_of(signed_in), "expires_at": "2030-01-01T00:00:00Z"},
        follow_redirects=False,
    )
    assert run(store.get_key(key.id)).expires_at == "2030-01-01T00:00:00Z"
    assert run(store.get_key(key.id)).usage_limit == Decimal("3.50")

    entries = run(store.list_audit(None, key.id, 100))
    assert [e.action for e in entries] == ["create", "set_usage_limit", "rotate", "set_expiry"]
    assert {(e.actor, e.client) for e in entries} == {("dashboard", "testclient")}

    page = signed_in.get("/dashboard/audit", params={"object": key.id})
    assert page.status_code == 200
    assert page.text.count(f"key:{key.id}") == 4
    assert "set_usage_limit" in page.text and "3.50" in page.text
    assert "llmgtwy_" + token not in page.text and key.token_hash not in page.text
    bad = signed_in.get("/dashboard/audit", params={"since": "yesterday"})
    assert bad.status_code == 400 and "2027-01-01T00:00:00Z" in bad.text
