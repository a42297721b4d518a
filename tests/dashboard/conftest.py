"""A small Litestar app with only the dashboard mounted, on a real SQLite store in a temp dir."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from proxy.dashboard import InMemoryDecisionLog, build_dashboard
from proxy.store import Store, open_store

ADMIN_TOKEN = "test-admin-token-3f9a2c7d"
ORG = "acme"
PROJECT = "default"

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_SIGNIN = re.compile(r'name="signin_token" value="([0-9a-f]+)"')


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'dashboard.db'}")

    async def prepare() -> None:
        await opened.migrate()
        await opened.create_organization(ORG, Decimal("10.00"))
        await opened.create_project(PROJECT, ORG, "hybrid")

    run(prepare())
    yield opened
    run(opened.close())


@pytest.fixture
def decision_log() -> InMemoryDecisionLog:
    return InMemoryDecisionLog()


def make_app(
    store: Store, decision_log: InMemoryDecisionLog, admin_token: str = ADMIN_TOKEN
) -> Litestar:
    dashboard = build_dashboard(
        store_provider=lambda _request: store, admin_token=admin_token, decision_log=decision_log
    )
    return Litestar(route_handlers=[dashboard])


@pytest.fixture
def app(store: Store, decision_log: InMemoryDecisionLog) -> Litestar:
    return make_app(store, decision_log)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def signin_token(client: TestClient[Litestar]) -> str:
    page = client.get("/dashboard/signin")
    match = _SIGNIN.search(page.text)
    assert match, "the sign-in page carries its CSRF field"
    return match.group(1)


def sign_in(client: TestClient[Litestar], token: str = ADMIN_TOKEN) -> Any:
    nonce = signin_token(client)
    return client.post(
        "/dashboard/signin",
        data={"admin_token": token, "signin_token": nonce},
        follow_redirects=False,
    )


def csrf_of(client: TestClient[Litestar], page: str = "/dashboard/keys") -> str:
    match = _CSRF.search(client.get(page).text)
    assert match, f"{page} carries a CSRF field"
    return match.group(1)


@pytest.fixture
def signed_in(client: TestClient[Litestar]) -> TestClient[Litestar]:
    response = sign_in(client)
    assert response.status_code == 303
    return client
