"""What an operator does on the pages lands in the store through the same Store methods."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from litestar import Litestar
from litestar.testing import TestClient

from dashboard.conftest import PROJECT, csrf_of, run
from proxy.dashboard import InMemoryDecisionLog, LoggedDecision
from proxy.store import Store

Client = TestClient[Litestar]


def _post(client: Client, path: str, **fields: str) -> str:
    response = client.post(path, data={"csrf_token": csrf_of(client), **fields})
    assert response.status_code == 200, response.text
    return response.text


def _row(page: str, key_id: str) -> str:
    match = re.search(rf'<tr data-key-id="{key_id}">(.*?)</tr>', page, re.S)
    assert match, f"key {key_id} is listed"
    return re.sub(r"\s+", " ", match.group(1))


def test_create_key_with_a_limit_lists_it_masked_with_usage_and_bar(
    signed_in: Client, store: Store
) -> None:
    page = _post(
        signed_in, "/dashboard/keys", project=PROJECT, description="staging", usage_limit="5"
    )
    assert "Copy" in page and 'data-copy="new-token"' in page
    key = run(store.list_keys(PROJECT))[0]
    assert (key.description, key.usage_limit, key.status) == ("staging", Decimal("5"), "active")
    row = _row(signed_in.get("/dashboard/keys").text, key.id)
    assert key.display in row and "…" in key.display
    assert "Active" in row and "$0.00 / $5.00" in row
    assert 'aria-label="0% of the usage limit used"' in row
    assert key.created_at in row


def test_usage_bar_follows_the_store(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, Decimal("2.00"), "half"))
    reservation = run(store.reserve(key.id, None, Decimal("0.50")))
    assert reservation is not None
    run(store.settle(reservation, Decimal("1.00")))
    row = _row(signed_in.get("/dashboard/keys").text, key.id)
    assert "$1.00 / $2.00" in row
    assert 'aria-label="50% of the usage limit used"' in row


def test_key_without_limit_shows_no_bar(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, None, "unbounded"))
    row = _row(signed_in.get("/dashboard/keys").text, key.id)
    assert "$0.00 / no limit" in row and "<svg" not in row


def test_a_bad_usage_limit_is_explained_and_nothing_is_created(
    signed_in: Client, store: Store
) -> None:
    response = signed_in.post(
        "/dashboard/keys",
        data={"csrf_token": csrf_of(signed_in), "project": PROJECT, "usage_limit": "ten"},
    )
    assert response.status_code == 400
    assert "Usage limit: `ten` is not an amount in USD" in response.text
    assert run(store.list_keys()) == []


def test_disable_enable_and_delete_with_confirmation(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, None, "lifecycle"))
    _post(signed_in, f"/dashboard/keys/{key.id}/status", status="inactive", next="list")
    assert run(store.get_key(key.id)).status == "inactive"
    assert "Inactive" in _row(signed_in.get("/dashboard/keys").text, key.id)
    _post(signed_in, f"/dashboard/keys/{key.id}/status", status="active")
    assert run(store.get_key(key.id)).status == "active"

    confirm_page = signed_in.get(f"/dashboard/keys/{key.id}/delete").text
    assert "permanent" in confirm_page
    unconfirmed = signed_in.post(
        f"/dashboard/keys/{key.id}/delete", data={"csrf_token": csrf_of(signed_in)}
    )
    assert unconfirmed.status_code == 400
    assert run(store.get_key(key.id)).status == "active"
    _post(signed_in, f"/dashboard/keys/{key.id}/delete", confirm="delete")
    assert run(store.get_key(key.id)).status == "deleted"
    row = _row(signed_in.get("/dashboard/keys").text, key.id)
    assert "Deleted" in row and "Enable" not in row

    revived = signed_in.post(
        f"/dashboard/keys/{key.id}/status",
        data={"csrf_token": csrf_of(signed_in), "status": "active"},
    )
    assert revived.status_code == 400 and "permanent" in revived.text
    assert run(store.get_key(key.id)).status == "deleted"


def test_edit_usage_limit_and_clear_it(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, None, "limits"))
    _post(signed_in, f"/dashboard/keys/{key.id}/limit", usage_limit="12.50")
    assert run(store.get_key(key.id)).usage_limit == Decimal("12.50")
    assert 'value="12.50"' in signed_in.get(f"/dashboard/keys/{key.id}").text
    _post(signed_in, f"/dashboard/keys/{key.id}/limit", usage_limit="")
    assert run(store.get_key(key.id)).usage_limit is None
    negative = signed_in.post(
        f"/dashboard/keys/{key.id}/limit",
        data={"csrf_token": csrf_of(signed_in), "usage_limit": "-1"},
    )
    assert negative.status_code == 400 and "zero or a positive amount" in negative.text


def test_iam_rules_add_list_and_remove(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, None, "rules"))
    page = signed_in.get(f"/dashboard/keys/{key.id}").text
    for rule_type in (
        "allow_models",
        "deny_models",
        "allow_providers",
        "deny_providers",
        "allow_operations",
        "deny_operations",
    ):
        assert f'<option value="{rule_type}">' in page
    _post(signed_in, f"/dashboard/keys/{key.id}/rules", type="deny_models", values="gpt-4, gpt-4o*")
    rules = run(store.list_rules(key.id))
    assert [(r.type, r.values) for r in rules] == [("deny_models", ("gpt-4", "gpt-4o*"))]
    page = signed_in.get(f"/dashboard/keys/{key.id}").text
    assert f'data-rule-id="{rules[0].id}"' in page and "<code>gpt-4o*</code>" in page

    unknown = signed_in.post(
        f"/dashboard/keys/{key.id}/rules",
        data={"csrf_token": csrf_of(signed_in), "type": "allow_everything", "values": "x"},
    )
    assert unknown.status_code == 400 and "`allow_everything` is unknown" in unknown.text

    _post(signed_in, f"/dashboard/keys/{key.id}/rules/{rules[0].id}/status", status="inactive")
    assert run(store.list_rules(key.id))[0].status == "inactive"
    assert "Inactive (not applied)" in signed_in.get(f"/dashboard/keys/{key.id}").text
    _post(signed_in, f"/dashboard/keys/{key.id}/rules/{rules[0].id}/status", status="active")
    assert run(store.list_rules(key.id))[0].status == "active"

    _post(signed_in, f"/dashboard/keys/{key.id}/rules/{rules[0].id}/remove")
    assert run(store.list_rules(key.id)) == []


def test_rename_a_key(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, None, "old name"))
    _post(signed_in, f"/dashboard/keys/{key.id}/description", description="billing service")
    assert run(store.get_key(key.id)).description == "billing service"
    assert "billing service" in signed_in.get("/dashboard/keys").text


def test_organizations_and_projects_created_and_archived(signed_in: Client, store: Store) -> None:
    _post(signed_in, "/dashboard/orgs", id="globex", credits="3.5")
    assert run(store.get_organization("globex")).credits == Decimal("3.5")
    orgs = signed_in.get("/dashboard/orgs").text
    assert 'data-org-id="globex"' in orgs and "$3.50" in orgs
    _post(signed_in, "/dashboard/projects", id="research", organization="globex", mode="credits")
    project = run(store.get_project("research"))
    assert (project.organization_id, project.mode) == ("globex", "credits")
    assert 'href="/dashboard/projects/research"' in signed_in.get("/dashboard/orgs").text
    unconfirmed = signed_in.post(
        "/dashboard/projects/research/archive", data={"csrf_token": csrf_of(signed_in)}
    )
    assert unconfirmed.status_code == 400 and run(store.get_project("research")).status == "active"
    _post(signed_in, "/dashboard/projects/research/archive", confirm="archive")
    assert run(store.get_project("research")).status == "deleted"
    taken = signed_in.post(
        "/dashboard/orgs", data={"csrf_token": csrf_of(signed_in), "id": "globex"}
    )
    assert taken.status_code == 400


def test_small_usage_is_readable_and_its_bar_visible(signed_in: Client, store: Store) -> None:
    key, _ = run(store.create_key(PROJECT, Decimal("10.00"), "tiny"))
    reservation = run(store.reserve(key.id, None, Decimal("0.001")))
    assert reservation is not None
    run(store.settle(reservation, Decimal("0.0000853")))
    row = _row(signed_in.get("/dashboard/keys").text, key.id)
    assert 'title="$0.0000853 used">$0.000085 / $10.00' in row
    assert 'aria-label="0.00085% of the usage limit used"' in row
    width = re.search(r'class="fill" width="([\d.]+)"', row)
    assert width is not None and float(width.group(1)) >= 2


def test_unknown_key_is_a_404_page_not_a_crash(signed_in: Client) -> None:
    response = signed_in.get("/dashboard/keys/key_does_not_exist")
    assert response.status_code == 404
    assert "key_does_not_exist" in response.text


def test_project_mode_with_documented_explanations(signed_in: Client, store: Store) -> None:
    page = signed_in.get(f"/dashboard/projects/{PROJECT}").text
    # Self-hosted wording: the gateway's own credentials, the organization's credits.
    assert "otherwise the gateway&#39;s own credentials" in page
    assert "Uses the provider credentials this gateway is configured with" in page
    assert "Uses only the provider keys set on this project" in page
    assert "shared pool" not in page
    assert re.search(r'value="hybrid" checked', page)
    _post(signed_in, f"/dashboard/projects/{PROJECT}/mode", mode="credits")
    assert run(store.get_project(PROJECT)).mode == "credits"
    bad = signed_in.post(
        f"/dashboard/projects/{PROJECT}/mode",
        data={"csrf_token": csrf_of(signed_in), "mode": "free"},
    )
    assert bad.status_code == 400 and run(store.get_project(PROJECT)).mode == "credits"


def test_provider_keys_are_never_shown_in_full(signed_in: Client, store: Store) -> None:
    secret = "sk-live-0123456789abcdefWXYZ"
    _post(
        signed_in,
        f"/dashboard/projects/{PROJECT}/provider-keys",
        provider="openai",
        source="value",
        value=secret,
    )
    _post(
        signed_in,
        f"/dashboard/projects/{PROJECT}/provider-keys",
        provider="azure",
        source="env",
        value="AZURE_KEY",
    )
    assert run(store.get_project(PROJECT)).provider_keys == {
        "openai": {"value": secret},
        "azure": {"env": "AZURE_KEY"},
    }
    page = signed_in.get(f"/dashboard/projects/{PROJECT}").text
    assert secret not in page and secret[:12] not in page
    assert "••••WXYZ" in page and "AZURE_KEY" in page
    _post(
        signed_in,
        f"/dashboard/projects/{PROJECT}/provider-keys",
        provider="openai",
        source="value",
        value="sk-replacement-key-abcd",
    )
    assert run(store.get_project(PROJECT)).provider_keys["openai"] == {
        "value": "sk-replacement-key-abcd"
    }
    _post(signed_in, f"/dashboard/projects/{PROJECT}/provider-keys/openai/remove")
    assert set(run(store.get_project(PROJECT)).provider_keys) == {"azure"}


def test_organization_credits(signed_in: Client, store: Store) -> None:
    page = signed_in.get(f"/dashboard/projects/{PROJECT}").text
    assert '<strong id="org-credits" title="$10">$10.00</strong>' in page
    _post(signed_in, f"/dashboard/projects/{PROJECT}/credits", credits="42.125")
    assert run(store.get_organization("acme")).credits == Decimal("42.125")
    page = signed_in.get(f"/dashboard/projects/{PROJECT}").text
    assert '<strong id="org-credits" title="$42.125">$42.13</strong>' in page


def test_activity_shows_recent_requests_and_daily_usage(
    signed_in: Client, store: Store, decision_log: InMemoryDecisionLog
) -> None:
    key, _ = run(store.create_key(PROJECT, None, "busy"))
    now = datetime.now(UTC)
    decision_log.record(
        LoggedDecision(
            time=now - timedelta(days=1),
            key_id=key.id,
            operation="chat.completions",
            model="mock-model",
            provider="mock",
            status=200,
            cost=Decimal("0.25"),
        )
    )
    decision_log.record(
        LoggedDecision(
            time=now,
            key_id=key.id,
            operation="chat.completions",
            model="gpt-4",
            provider=None,
            status=403,
            message="Access denied: Model gpt-4 is in the denied models list",
        )
    )
    page = signed_in.get(f"/dashboard/keys/{key.id}").text
    rows = re.findall(r"<tr class=\"(ok|refused)\">(.*?)</tr>", page, re.S)
    assert [cls for cls, _ in rows] == ["refused", "ok"], "newest first"
    assert "gpt-4" in rows[0][1] and "403" in rows[0][1]
    assert "Access denied: Model gpt-4 is in the denied models list" in rows[0][1]
    assert "mock-model" in rows[1][1] and "$0.25" in rows[1][1]
    bars = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)">', page)
    assert len(bars) == 14
    assert [float(h) > 0 for h in bars] == [False] * 12 + [True, False]


def test_project_rules_and_names(signed_in: Client, store: Store) -> None:
    page = f"/dashboard/projects/{PROJECT}"
    _post(signed_in, f"{page}/rules", type="allow_models", values="mock-*")
    (rule,) = run(store.list_project_rules(PROJECT))
    assert (rule.type, rule.values, rule.status) == ("allow_models", ("mock-*",), "active")
    shown = signed_in.get(page).text
    assert f'data-rule-id="{rule.id}"' in shown and "<code>mock-*</code>" in shown
    _post(signed_in, f"{page}/rules/{rule.id}/status", status="inactive")
    assert run(store.list_project_rules(PROJECT))[0].status == "inactive"
    _post(signed_in, f"{page}/rules/{rule.id}/remove")
    assert run(store.list_project_rules(PROJECT)) == []
    _post(signed_in, f"{page}/name", name="Research team")
    assert run(store.get_project(PROJECT)).name == "Research team"
    assert "Research team" in signed_in.get("/dashboard/keys").text
    _post(signed_in, "/dashboard/orgs/acme/name", name="Acme Inc")
    assert run(store.get_organization("acme")).name == "Acme Inc"
    assert 'value="Acme Inc"' in signed_in.get("/dashboard/orgs").text
