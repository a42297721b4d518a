"""Controls set by a policy file (`budgets:` / `rate_limits:` in a `*.iam.yaml`) are
shown where a user looks (`gateway keys show`, `projects show`, the admin API, the
dashboard) with where each comes from, the window's usage and the time to its reset.
They showed only the key store's: "no budget" while the policy enforced one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_backends import Backend
from test_admin_cli import gateway, ok

from proxy.app import create_app
from proxy.config import GatewayConfig, default_policy_dir

ADMIN = "admin-controls-token"


def _policies(tmp_path: Path, extra: str) -> Path:
    """The shipped policies plus one `*.iam.yaml` file."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    for source in Path(default_policy_dir()).iterdir():
        if source.is_file():
            (policies / source.name).write_text(source.read_text(encoding="utf-8"))
    (policies / "controls.iam.yaml").write_text(extra)
    return policies


def _file(key_id: str) -> str:
    return (
        "version: 1\n"
        "budgets:\n"
        f'  - {{id: key-cap, applies_to: {{key: {key_id}}}, amount: "3", period: day}}\n'
        '  - {applies_to: {project: default}, amount: "50", period: month}\n'
        "rule_sets:\n"
        "  - applies_to: {all_keys: true}\n"
        "    rate_limits: {rpm: 60, max_parallel: 4}\n"
        "  - applies_to: {project: default}\n"
        "    rate_limits: {tpm: 100000}\n"
    )


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")


def test_keys_show_and_projects_show_give_the_policy_files_controls(
    sqlite: Backend, tmp_path: Path
) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--rpm", "100")
    plain = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--budget", "5/week")
    policies = _policies(tmp_path, _file(created["id"]))
    (tmp_path / "gateway.yaml").write_text(f"policy_dir: {policies}\n")
    config = ("--config", str(tmp_path / "gateway.yaml"))

    shown = ok(sqlite, tmp_path, "keys", "show", created["id"], *config)
    assert shown["budget"] is None  # nothing stored on the key...
    budget = shown["period_budget"]  # ...but the file's budget applies, and is shown
    assert {k: budget[k] for k in ("budget", "source", "policy_id", "usage")} == {
        "budget": "3/day",
        "source": "policy",
        "policy_id": "key-cap",
        "usage": "0",
    }
    assert 0 < budget["resets_in_seconds"] <= 86400
    assert budget["resets_at"] > budget["window_start"]
    assert shown["effective_rate_limits"] == {
        "rpm": {"limit": 60, "source": "policy"},  # the file's 60 under the stored 100
        "tpm": None,
        "max_parallel": {"limit": 4, "source": "policy"},
    }
    assert shown["rpm"] == 100  # the stored setting itself is unchanged
    assert shown["rate_window"]["requests"] == 0
    assert shown["project_period_budget"]["budget"] == "50/month"
    assert shown["project_effective_rate_limits"]["tpm"] == {"limit": 100000, "source": "policy"}
    assert shown["controls_problem"] is None

    text = gateway(sqlite, tmp_path, "keys", "show", created["id"], *config).stdout
    assert "budget 3/day (policy file budget key-cap): 0 used in the window from" in text
    assert "rate limits: rpm 60 (policy file), max parallel 4 (policy file)" in text
    assert "project default budget 50/month (policy file)" in text
    assert "no budget" not in text

    # A stored budget of another period than the file's is not held, and says so.
    other = ok(sqlite, tmp_path, "keys", "show", plain["id"], *config)
    assert other["period_budget"]["source"] == "store"  # no file budget names this key
    assert other["period_budget"]["budget"] == "5/week"
    assert other["effective_rate_limits"]["rpm"] == {"limit": 60, "source": "policy"}

    project = ok(sqlite, tmp_path, "projects", "show", "default", *config)
    assert project["budget"] is None
    assert (project["period_budget"]["budget"], project["period_budget"]["source"]) == (
        "50/month",
        "policy",
    )
    assert project["effective_rate_limits"]["tpm"] == {"limit": 100000, "source": "policy"}
    text = gateway(sqlite, tmp_path, "projects", "show", "default", *config).stdout
    assert "budget 50/month (policy file): 0 used" in text and "tpm 100000 (policy file)" in text

    # Without the file the stored controls are what applies, and are shown as stored.
    shown = ok(sqlite, tmp_path, "keys", "show", created["id"])
    assert shown["period_budget"] is None
    assert shown["effective_rate_limits"]["rpm"] == {"limit": 100, "source": "store"}


def test_a_stored_budget_not_held_is_named(sqlite: Backend, tmp_path: Path) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--budget", "5/week")
    policies = _policies(tmp_path, _file(created["id"]))
    (tmp_path / "gateway.yaml").write_text(f"policy_dir: {policies}\n")
    shown = ok(
        sqlite, tmp_path, "keys", "show", created["id"], "--config", str(tmp_path / "gateway.yaml")
    )
    assert shown["budget"] == "5/week"
    assert shown["period_budget"]["budget"] == "3/day"
    assert shown["period_budget"]["stored_not_held"] == "5/week"
    text = gateway(
        sqlite, tmp_path, "keys", "show", created["id"], "--config", str(tmp_path / "gateway.yaml")
    ).stdout
    assert "stored budget 5/week is not held" in text


def test_a_broken_policy_shows_the_stored_controls_and_says_why(
    sqlite: Backend, tmp_path: Path
) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--budget", "2/hour")
    policies = _policies(tmp_path, "version: 1\nbudgets: [oops\n")
    (tmp_path / "gateway.yaml").write_text(f"policy_dir: {policies}\n")
    shown = ok(
        sqlite, tmp_path, "keys", "show", created["id"], "--config", str(tmp_path / "gateway.yaml")
    )
    assert shown["period_budget"]["budget"] == "2/hour"
    assert shown["period_budget"]["source"] == "store"
    assert "could not be loaded" in shown["controls_problem"]


class Clock:
    def __init__(self) -> None:
        self.now = "2027-03-01T10:00:00Z"

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, Any, Path]]:
    """A gateway with the admin API and the dashboard, and its store to make keys."""
    from litestar.testing import TestClient

    # A file whose budget names no key yet; the test writes the real one.
    policies = _policies(
        tmp_path,
        'version: 1\nbudgets:\n  - {applies_to: {key: nobody}, amount: "1", period: day}\n',
    )
    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'api.db'}",
        policy_dir=str(policies),
        reload_interval=0.0,
        admin_token=ADMIN,
    )
    with TestClient(create_app(config, clock=Clock()), base_url="http://127.0.0.1") as client:
        yield client, client.app, policies  # type: ignore[misc]


def _admin(client: Any, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = client.request(
        method, f"/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == status, response.text
    return response.json()


def test_admin_api_and_dashboard_show_the_policy_files_controls(
    served: tuple[httpx.Client, Any, Path],
) -> None:
    client, app, policies = served
    key = _admin(client, "POST", "/keys", {"project": "default", "budget": "5/day"}, 201)
    (policies / "controls.iam.yaml").write_text(_file(key["id"]))
    assert app.state.policy.reload()

    shown = _admin(client, "GET", f"/keys/{key['id']}")
    assert shown["budget"] == "5/day"  # stored
    budget = shown["period_budget"]  # applies: the file's 3/day, the stricter
    assert (budget["budget"], budget["source"], budget["policy_id"]) == (
        "3/day",
        "policy",
        "key-cap",
    )
    assert (budget["window_start"], budget["resets_at"]) == (
        "2027-03-01T00:00:00Z",
        "2027-03-02T00:00:00Z",
    )
    assert budget["resets_in_seconds"] == 14 * 3600  # at the gateway's clock
    assert shown["effective_rate_limits"]["max_parallel"] == {"limit": 4, "source": "policy"}
    assert shown["project_period_budget"]["budget"] == "50/month"
    project = _admin(client, "GET", "/projects/default")
    assert project["period_budget"]["source"] == "policy"
    assert project["effective_rate_limits"]["tpm"] == {"limit": 100000, "source": "policy"}

    _sign_in(client)
    page = _page(client, f"/dashboard/keys/{key['id']}")
    assert "This budget is set by a policy file (budget `key-cap`)." in page
    assert "The stored budget 5/day is looser than the policy file" in page
    assert "60 requests/min (policy file)" in page and "4 in parallel (policy file)" in page
    assert "of $3.00" in page
    project_page = _page(client, "/dashboard/projects/default")
    assert "of $50.00" in project_page and "100000 tokens/min (policy file)" in project_page


def _sign_in(client: httpx.Client) -> None:
    nonce = re.search(
        r'name="signin_token" value="([0-9a-f]+)"', client.get("/dashboard/signin").text
    )
    assert nonce, "the sign-in page carries its CSRF field"
    signed = client.post(
        "/dashboard/signin",
        data={"admin_token": ADMIN, "signin_token": nonce.group(1)},
        follow_redirects=False,
    )
    assert signed.status_code == 303


def _page(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return page.text
