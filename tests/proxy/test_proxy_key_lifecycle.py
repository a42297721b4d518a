"""Key expiry and rotation (issue 13, point 3) through the real server: an expired key and
a rotated-out token past its grace period get the documented invalid-token 401, and the
decision log says why. The request time comes from an injectable clock, never a sleep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_deployment import Deployment, deployed
from proxy_helpers import MSG_INVALID, chat, documented
from shipped_policy import ShippedPolicies

ADMIN = "admin-lifecycle-token"


class Clock:
    """The request time the policy sees; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def reset(self) -> None:
        self.now = datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def lifecycle(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies, clock: Clock
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("lifecycle"),
        compile_policy=shipped_policies.loader,
        clock=clock,
        admin_token=ADMIN,
    ) as d:
        yield d


@pytest.fixture(scope="module")
def client(lifecycle: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lifecycle.url, timeout=30) as http:
        yield http


def _admin(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    response = client.request(
        method, f"/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def _chat(client: httpx.Client, token: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json=chat("mock-model"),
        headers={"Authorization": f"Bearer {token}"},
    )


def _decision_lines(deployment: Deployment, key_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in deployment.logs.lines:
        if line.startswith("gateway.decision INFO "):
            record = json.loads(line.removeprefix("gateway.decision INFO "))
            if record.get("key_id") == key_id:
                lines.append(record)
    return lines


def test_an_expired_key_gets_the_invalid_token_401_and_the_log_says_expired(
    client: httpx.Client, lifecycle: Deployment, clock: Clock
) -> None:
    clock.reset()
    expiry = clock.now + timedelta(hours=1)
    created = _admin(
        client,
        "POST",
        "/keys",
        {"project": "default", "expires_at": expiry.isoformat()},  # an offset, normalised
    )
    assert created["expires_at"] == expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _chat(client, created["token"]).status_code == 200

    clock.advance(3600)  # exactly at the expiry: refused
    refused = _chat(client, created["token"])
    assert refused.status_code == 401
    assert refused.json() == documented(401, MSG_INVALID)
    last = _decision_lines(lifecycle, created["id"])[-1]
    assert last["reason_code"] == "expired"
    assert created["token"] not in lifecycle.logs.text

    # Clearing the expiry lets the key in again (admin API, same store method as the CLI).
    assert (
        _admin(client, "PUT", f"/keys/{created['id']}/expires-at", {"expires_at": None})[
            "expires_at"
        ]
        is None
    )
    assert _chat(client, created["token"]).status_code == 200


def test_a_rotated_key_keeps_its_record_and_the_old_token_works_only_in_the_grace_period(
    client: httpx.Client, lifecycle: Deployment, clock: Clock
) -> None:
    clock.reset()
    created = _admin(client, "POST", "/keys", {"project": "default", "usage_limit": "5.00"})
    old = created["token"]
    assert _chat(client, old).status_code == 200
    used = _admin(client, "GET", f"/keys/{created['id']}")["usage"]

    rotated = _admin(client, "POST", f"/keys/{created['id']}/rotate", {"grace_seconds": 600})
    assert set(rotated) == {"id", "token"}
    assert rotated["id"] == created["id"] and rotated["token"] != old
    new = rotated["token"]
    key = _admin(client, "GET", f"/keys/{created['id']}")
    assert key["usage"] == used and key["usage_limit"] == "5.00"  # the same record

    assert _chat(client, new).status_code == 200
    assert _chat(client, old).status_code == 200  # in the grace period
    clock.advance(601 + 1)  # the grace period is rounded up to the next second
    refused = _chat(client, old)
    assert refused.status_code == 401
    assert refused.json() == documented(401, MSG_INVALID)
    assert _decision_lines(lifecycle, created["id"])[-1]["reason_code"] == "token_rotated"
    assert _chat(client, new).status_code == 200

    # Without a grace period the old token stops at once.
    again = _admin(client, "POST", f"/keys/{created['id']}/rotate", {})
    assert _chat(client, new).status_code == 401
    assert _chat(client, again["token"]).status_code == 200
    for token in (old, new, again["token"]):
        assert token not in lifecycle.logs.text


def test_a_deleted_key_cannot_be_rotated(client: httpx.Client) -> None:
    created = _admin(client, "POST", "/keys", {"project": "default"})
    _admin(client, "DELETE", f"/keys/{created['id']}")
    response = client.post(
        f"/admin/keys/{created['id']}/rotate",
        json={},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 409
    assert "deleted" in response.json()["message"]


def test_a_bad_expiry_is_refused_with_how_to_write_it(client: httpx.Client) -> None:
    response = client.post(
        "/admin/keys",
        json={"project": "default", "expires_at": "next tuesday"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 400
    assert "2027-01-01T00:00:00Z" in response.json()["message"]


def test_cli_rotate_prints_id_and_token(tmp_path: Path) -> None:
    from proxy.cli import main

    database = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "gateway.yaml"
    config.write_text(f"database: {database}\n")
    created = _run_cli(
        main,
        ["keys", "create", "--project", "default", "--expires-at", "2030-01-01T00:00:00Z"],
        config,
    )
    assert created["expires_at"] == "2030-01-01T00:00:00Z"
    rotated = _run_cli(main, ["keys", "rotate", created["id"], "--grace", "60"], config)
    assert set(rotated) == {"id", "token"} and rotated["id"] == created["id"]
    cleared = _run_cli(main, ["keys", "set-expiry", created["id"], "none"], config)
    assert cleared["expires_at"] is None


def _run_cli(main: Any, argv: list[str], config: Path) -> Any:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--config", str(config), "--json"]) == 0
    return json.loads(out.getvalue())


def test_admin_changes_from_the_cli_and_the_admin_api_are_audited_without_tokens(
    client: httpx.Client, lifecycle: Deployment, tmp_path: Path
) -> None:
    from proxy.cli import main

    config = tmp_path / "gateway.yaml"
    config.write_text(f"database: sqlite:///{lifecycle.admin.path}\n")
    by_cli = _run_cli(main, ["keys", "create", "--project", "default"], config)
    _run_cli(main, ["keys", "set-limit", by_cli["id"], "7.00"], config)
    by_api = _admin(client, "POST", "/keys", {"project": "default"})
    rotated = _admin(client, "POST", f"/keys/{by_api['id']}/rotate", {"grace_seconds": 5})
    assert _chat(client, rotated["token"]).status_code == 200

    cli_entries = _admin(client, "GET", f"/audit?object={by_cli['id']}")
    assert [(e["action"], e["actor"]) for e in cli_entries] == [
        ("create", "cli"),
        ("set_usage_limit", "cli"),
    ]
    assert "@" in cli_entries[0]["client"]  # user@host
    api_entries = _admin(client, "GET", f"/audit?object=key:{by_api['id']}")
    assert [(e["action"], e["actor"], e["client"]) for e in api_entries] == [
        ("create", "admin-api", "127.0.0.1"),
        ("rotate", "admin-api", "127.0.0.1"),
    ]
    everything = json.dumps(_admin(client, "GET", "/audit?limit=10000"))
    metrics = client.get("/metrics").text
    for token in (by_cli["token"], by_api["token"], rotated["token"]):
        for place in (everything, metrics, lifecycle.logs.text):
            assert token not in place
    assert (
        client.get(
            "/admin/audit?since=soon", headers={"Authorization": f"Bearer {ADMIN}"}
        ).status_code
        == 400
    )


def test_last_used_time_and_request_counts_per_key(
    client: httpx.Client, lifecycle: Deployment, clock: Clock, tmp_path: Path
) -> None:
    from proxy.cli import main

    clock.reset()
    created = _admin(client, "POST", "/keys", {"project": "default"})
    assert _admin(client, "GET", f"/keys/{created['id']}")["last_used_at"] is None
    for _ in range(3):
        assert _chat(client, created["token"]).status_code == 200
    shown = _admin(client, "GET", f"/keys/{created['id']}")  # flushes this instance first
    assert shown["requests"] == 3 and shown["last_used_at"] == clock()
    assert shown["prompt_tokens"] > 0 and shown["completion_tokens"] > 0
    listed = {k["id"]: k for k in _admin(client, "GET", "/keys")}
    assert listed[created["id"]]["requests"] == 3
    config = tmp_path / "gateway.yaml"
    config.write_text(f"database: sqlite:///{lifecycle.admin.path}\n")
    by_cli = _run_cli(main, ["keys", "show", created["id"]], config)
    assert (by_cli["requests"], by_cli["last_used_at"]) == (3, clock())
