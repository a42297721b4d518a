"""Issue 12 point 6 through the real server: with `GATEWAY_SECRET_KEY` a project's
provider key given by value is encrypted in the database and still used upstream, token
hashes are keyed, a key written without the secret still works (and is converted), and
`gateway secrets migrate` converts an existing database."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from proxy_deployment import Deployment, LoopThread, deployed
from proxy_helpers import auth, chat, make_tenant
from shipped_policy import ShippedPolicies

from proxy.app import open_configured_store
from proxy.cli import main
from proxy.config import GatewayConfig
from proxy.secret_box import KEYED_PREFIX
from proxy.store.base import StoreError
from proxy.store.sqlite import SqliteStore

SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("secrets"),
        compile_policy=shipped_policies.loader,
        secret_key=SECRET,
    ) as running:
        yield running


def _column(database: str, query: str, *params: str) -> str:
    with sqlite3.connect(database) as conn:
        value: str = conn.execute(query, params).fetchone()[0]
    return value


def test_a_provider_key_by_value_is_encrypted_and_still_forwarded(
    deployment: Deployment,
) -> None:
    tenant = make_tenant(
        deployment.admin, mode="api-keys", provider_keys={"openai": {"value": "sk-at-rest"}}
    )
    response = httpx.post(
        f"{deployment.url}/v1/chat/completions",
        json=chat(model="openai/gpt-4"),
        headers=auth(tenant.token, "bearer"),
    )
    assert response.status_code == 200
    assert deployment.upstream.requests[-1]["auth"] == "Bearer sk-at-rest"
    database = deployment.admin.path
    stored = _column(database, "SELECT provider_keys FROM projects WHERE id = ?", tenant.project_id)
    assert "sk-at-rest" not in stored and set(json.loads(stored)["openai"]) == {"encrypted"}
    token_hash = _column(database, "SELECT token_hash FROM api_keys WHERE id = ?", tenant.key.id)
    assert token_hash.startswith(KEYED_PREFIX)


def test_a_key_written_without_the_secret_works_and_is_converted(
    deployment: Deployment,
) -> None:
    thread = LoopThread()
    plain = SqliteStore(deployment.admin.path)  # e.g. `gateway keys create` without the key
    try:
        key, token = thread.run(plain.create_key("default", None, "written without the secret"))
        thread.run(plain.close())
    finally:
        thread.stop()
    assert not key.token_hash.startswith(KEYED_PREFIX)
    response = httpx.post(
        f"{deployment.url}/v1/chat/completions", json=chat(), headers=auth(token, "bearer")
    )
    assert response.status_code == 200
    database = deployment.admin.path
    token_hash = _column(database, "SELECT token_hash FROM api_keys WHERE id = ?", key.id)
    assert token_hash.startswith(KEYED_PREFIX)


def test_gateway_secrets_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "old.db"
    monkeypatch.setenv("GATEWAY_DATABASE", f"sqlite:///{database}")
    monkeypatch.delenv("GATEWAY_SECRET_KEY", raising=False)
    assert main(["keys", "create", "--project", "default", "--json"]) == 0
    assert main(["projects", "provider-key", "default", "openai", "--value", "sk-old"]) == 0
    assert main(["secrets", "migrate"]) == 2
    assert "GATEWAY_SECRET_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_SECRET_KEY", SECRET)
    assert main(["secrets", "migrate", "--json"]) == 0
    assert main(["secrets", "migrate", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-2]) == {"token_hashes_keyed": 1, "provider_keys_encrypted": 1}
    assert json.loads(lines[-1]) == {"token_hashes_keyed": 0, "provider_keys_encrypted": 0}
    stored = _column(str(database), "SELECT provider_keys FROM projects WHERE id = 'default'")
    assert "sk-old" not in stored


def test_a_protected_database_without_the_key_is_refused_at_start(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'protected.db'}"

    async def scenario() -> str:
        store = await open_configured_store(GatewayConfig(database=database, secret_key=SECRET))
        await store.create_key("default", None, "keyed")
        await store.close()
        with pytest.raises(StoreError) as refused:
            await open_configured_store(GatewayConfig(database=database))
        return str(refused.value)

    assert asyncio.run(scenario()) == (
        "the database holds 1 keyed token hashes and 0 encrypted provider keys, written with "
        "GATEWAY_SECRET_KEY; set GATEWAY_SECRET_KEY to the value they were written with"
    )
