"""Period budgets on the admin surfaces (issue 13 point 6): `gateway keys|projects …
--budget`, `set-budget`, `show` with the current window and its reset, the admin API's
routes, clear errors for bad input, and one audit entry per change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from shipped_policy import ShippedPolicies
from store_backends import Backend
from test_admin_cli import gateway, ok

from proxy.app import create_app
from proxy.config import GatewayConfig, default_policy_dir

ADMIN = "admin-budget-token"


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")


def test_cli_sets_shows_and_clears_budgets(sqlite: Backend, tmp_path: Path) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--budget", "5.00/day")
    assert created["budget"] == "5.00/day"
    shown = ok(sqlite, tmp_path, "keys", "show", created["id"])
    window = shown["period_budget"]
    assert (window["amount"], window["period"], window["usage"]) == ("5.00", "day", "0")
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    assert window["window_start"] == today
    assert window["resets_at"] > today
    text = gateway(sqlite, tmp_path, "keys", "show", created["id"]).stdout
    assert "budget 5.00/day" in text and "resets at" in text

    cleared = ok(sqlite, tmp_path, "keys", "set-budget", created["id"], "none")
    assert cleared["budget"] is None
    assert ok(sqlite, tmp_path, "keys", "show", created["id"])["period_budget"] is None
    assert ok(sqlite, tmp_path, "keys", "set-budget", created["id"], "2/hour")["budget"] == "2/hour"

    project = ok(
        sqlite, tmp_path, "projects", "create", "team", "--org", "default", "--budget", "100/month"
    )
    assert project["budget"] == "100/month"
    assert (
        ok(sqlite, tmp_path, "projects", "set-budget", "team", "50.00/week")["budget"]
        == "50.00/week"
    )
    window = ok(sqlite, tmp_path, "projects", "show", "team")["period_budget"]
    assert window["period"] == "week"
    assert datetime.fromisoformat(window["window_start"].replace("Z", "+00:00")).weekday() == 0

    # Every change once in the audit log (create, then the budget on its own line).
    entries = ok(sqlite, tmp_path, "audit", "list", "--object", created["id"])["entries"]
    budgets = [e for e in entries if e["action"] == "set_budget"]
    assert [e["after"]["budget"] for e in budgets] == ["5.00/day", None, "2/hour"]


def test_cli_explains_a_bad_budget(sqlite: Backend, tmp_path: Path) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default")
    done = gateway(sqlite, tmp_path, "keys", "set-budget", created["id"], "5/fortnight")
    assert done.returncode == 1
    assert "--budget: `5/fortnight`" in done.stderr
    assert "hour, day, week, month" in done.stderr
    done = gateway(
        sqlite, tmp_path, "keys", "create", "--project", "default", "--budget", "x/day", "--json"
    )
    assert done.returncode == 1
    assert "not a decimal amount" in json.loads(done.stdout)["error"]
    # Nothing was created by the refused command.
    assert len(ok(sqlite, tmp_path, "keys", "list")["keys"]) == 1


class Clock:
    def __init__(self) -> None:
        self.now = "2027-03-01T10:00:00Z"

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def api(tmp_path: Path, shipped_policies: ShippedPolicies) -> Iterator[tuple[httpx.Client, Clock]]:
    from litestar.testing import TestClient

    clock = Clock()
    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'api.db'}",
        policy_dir=default_policy_dir(),
        reload_interval=0.0,
        admin_token=ADMIN,
        budget_time_zone="Europe/Berlin",
    )
    app = create_app(config, clock=clock, policy=shipped_policies.holder())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, clock  # type: ignore[misc]


def _admin(client: Any, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = client.request(
        method, f"/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == status, response.text
    return response.json()


def test_admin_api_sets_and_shows_budgets_in_the_gateways_zone(
    api: tuple[httpx.Client, Clock],
) -> None:
    client, clock = api
    key = _admin(client, "POST", "/keys", {"project": "default", "budget": "0.002/day"}, 201)
    assert key["budget"] == "0.002/day"
    answer = client.post(
        "/v1/chat/completions",
        json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key['token']}"},
    )
    assert answer.status_code == 200
    shown = _admin(client, "GET", f"/keys/{key['id']}")
    window = shown["period_budget"]
    # Berlin's day (CET, +1) holding 2027-03-01T10:00Z, at the gateway's clock.
    assert (window["window_start"], window["resets_at"]) == (
        "2027-02-28T23:00:00Z",
        "2027-03-01T23:00:00Z",
    )
    assert window["usage"] != "0" and window["reserved"] == "0"
    clock.now = "2027-03-01T23:00:00Z"  # midnight in Berlin: a new window, at zero
    window = _admin(client, "GET", f"/keys/{key['id']}")["period_budget"]
    assert (window["window_start"], window["usage"]) == ("2027-03-01T23:00:00Z", "0")
    clock.now = "2027-03-01T10:00:00Z"

    changed = _admin(client, "PUT", f"/keys/{key['id']}/budget", {"budget": "1/hour"})
    assert changed["period_budget"]["window_start"] == "2027-03-01T10:00:00Z"
    # The answer to the change shows the key as GET does (it said `requests: 0` and
    # `last_used_at: null` right after the key had been used).
    assert (changed["requests"], changed["last_used_at"]) == (1, shown["last_used_at"])
    assert changed["rate_window"] == shown["rate_window"]
    assert _admin(client, "PUT", f"/keys/{key['id']}/budget", {"budget": None})["budget"] is None
    bad = _admin(client, "PUT", f"/keys/{key['id']}/budget", {"budget": "5/fortnight"}, 400)
    assert "field `budget`" in bad["message"] and "hour, day, week, month" in bad["message"]

    project = _admin(client, "PUT", "/projects/default/budget", {"budget": "100/month"})
    assert project["budget"] == "100/month"
    window = _admin(client, "GET", "/projects/default")["period_budget"]
    assert window["window_start"] == "2027-02-28T23:00:00Z"  # 1 March, Berlin
    audit = _admin(client, "GET", "/audit?object=project:default")
    assert audit[-1]["action"] == "set_budget"
    assert audit[-1]["actor"] == "admin-api"


def test_a_budget_refusal_says_when_the_window_resets(api: tuple[httpx.Client, Clock]) -> None:
    """The documented message stays exact; `x-budget-reset` (RFC 3339) says when the
    refused window ends, the only moment retrying can help."""
    client, _ = api
    key = _admin(client, "POST", "/keys", {"project": "default", "budget": "0/hour"}, 201)
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}
    refused = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key['token']}"}
    )
    assert refused.status_code == 401
    assert refused.json()["message"] == (
        "Unauthorized: LLMGateway API key reached its current period usage limit."
    )
    assert refused.headers["x-budget-reset"] == "2027-03-01T11:00:00Z"  # Berlin's hour
    assert "retry-after" not in refused.headers

    _admin(client, "PUT", f"/keys/{key['id']}/budget", {"budget": None})
    _admin(client, "PUT", "/projects/default/budget", {"budget": "0/day"})
    refused = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key['token']}"}
    )
    assert refused.status_code == 403
    assert refused.json()["message"] == "Project has reached its period spend budget."
    assert refused.headers["x-budget-reset"] == "2027-03-01T23:00:00Z"  # Berlin's midnight


def test_an_amount_written_with_an_exponent_is_kept_in_plain_digits(
    sqlite: Backend, tmp_path: Path
) -> None:
    """`1e3` is a decimal amount like any other, but was shown back as `1E+3/day`."""
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--budget", "1e3/day")
    assert created["budget"] == "1000/day"
    assert ok(sqlite, tmp_path, "keys", "show", created["id"])["period_budget"]["amount"] == "1000"
