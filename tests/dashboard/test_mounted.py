"""The dashboard as the proxy app mounts it: `create_app` with `GATEWAY_ADMIN_TOKEN` set.

The policy here is a stand-in that allows `mock-model` on the built-in mock provider,
so the proxy's real request path (store, reservation, mock provider, settlement,
decision log line) runs without depending on the policy engine.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from dashboard.conftest import ADMIN_TOKEN, csrf_of, sign_in
from proxy.app import create_app
from proxy.config import GatewayConfig
from proxy.dashboard.feed import DECISION_LOGGER, DecisionLineFeed
from proxy.policy import DecideFn, PolicyHolder

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]}


def _allow_mock_loader(_policy_dir: str, _data: dict[str, Any]) -> DecideFn:
    def decide(document: dict[str, Any]) -> object:
        key = document["key"]
        if key is None or key["status"] != "active":
            return {"allow": False, "status": 401, "message": "refused by the stand-in policy"}
        return {
            "allow": True,
            "status": 200,
            "model": "mock-model",
            "provider": "mock",
            "provider_model_id": "mock-model",
            "billing": "credits",
        }

    return decide


def _app(tmp_path: Path, admin_token: str | None) -> Litestar:
    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'gateway.db'}", admin_token=admin_token, reload_interval=0
    )
    holder = PolicyHolder(config.policy_dir, config.catalog_path, loader=_allow_mock_loader)
    return create_app(config, policy=holder)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    with TestClient(_app(tmp_path, ADMIN_TOKEN), base_url="http://127.0.0.1") as client:
        yield client


def test_no_dashboard_without_an_admin_token(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path, None)) as client:
        assert client.get("/dashboard/signin").status_code == 404


def test_mounted_dashboard_shows_usage_and_activity_of_real_requests(
    gateway: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert gateway.get("/dashboard/keys", follow_redirects=False).status_code == 303
    assert sign_in(gateway).status_code == 303
    created = gateway.post(
        "/dashboard/keys",
        data={"csrf_token": csrf_of(gateway), "project": "default", "description": "mounted"},
    )
    token = re.findall(r"llmgtwy_[A-Za-z0-9_-]{40,}", created.text)[0]
    key_id = re.search(r'data-key-id="([^"]+)"', gateway.get("/dashboard/keys").text)
    assert key_id
    answer = gateway.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    listed = gateway.get("/dashboard/keys").text
    usage = re.search(r'<span class="usage-text"[^>]*>\$([0-9.]+) / no limit</span>', listed)
    assert usage and float(usage.group(1)) > 0, "the request's cost shows as usage"
    page = gateway.get(f"/dashboard/keys/{key_id.group(1)}").text
    rows = re.findall(r'<tr class="ok">(.*?)</tr>', page, re.S)
    assert len(rows) == 1 and "mock-model" in rows[0] and "chat.completions" in rows[0]
    assert token not in caplog.text


def test_dashboard_and_admin_api_see_the_same_keys(gateway: TestClient[Litestar]) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    made = gateway.post(
        "/admin/keys", json={"project": "default", "description": "from the API"}, headers=admin
    )
    assert made.status_code == 201, made.text
    key_id = made.json()["id"]
    assert sign_in(gateway).status_code == 303
    listed = gateway.get("/dashboard/keys").text
    assert f'data-key-id="{key_id}"' in listed and "from the API" in listed
    disabled = gateway.post(
        f"/dashboard/keys/{key_id}/status",
        data={"csrf_token": csrf_of(gateway), "status": "inactive"},
    )
    assert disabled.status_code == 200
    assert gateway.get(f"/admin/keys/{key_id}", headers=admin).json()["status"] == "inactive"
    gateway.post(
        f"/dashboard/keys/{key_id}/limit",
        data={"csrf_token": csrf_of(gateway), "usage_limit": "3.50"},
    )
    assert gateway.get(f"/admin/keys/{key_id}", headers=admin).json()["usage_limit"] == "3.50"


def test_activity_feed_listens_only_while_the_app_runs(tmp_path: Path) -> None:
    decision_logger = logging.getLogger(DECISION_LOGGER)

    def feeds() -> int:
        return sum(isinstance(h, DecisionLineFeed) for h in decision_logger.handlers)

    before = feeds()
    with TestClient(_app(tmp_path, ADMIN_TOKEN)):
        assert feeds() == before + 1
    assert feeds() == before
