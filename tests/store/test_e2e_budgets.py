"""Period budgets through the real server (issue 13 point 1's acceptance): one gateway
on SQLite, and two gateways sharing PostgreSQL + Redis, on one injectable clock (the
tests move time, they never sleep).

Each chat request costs exactly 0.001 while the gateway reserves about five times that
(see test_e2e_usage): a day budget of 0.010 has room for exactly ten. Thirty at once
give exactly ten successes (the others waited for in-flight reservations, then got the
documented 401 on the settled window usage), the window's usage is exactly 0.010, and
the next day admits again. A project budget refuses with the documented 403, and the
decision log names the reason (`period_budget`, `project_period_budget`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from shipped_policy import ShippedPolicies
from store_backends import Backend, make_backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxy_test_servers import GatewayServer, LoopThread

from proxy.app import create_app
from proxy.budgets import Budget
from proxy.config import GatewayConfig, default_policy_dir
from proxy.store.base import Store
from proxy.store.redis_ledger import default_prefix

KEY_MESSAGE = "Unauthorized: LLMGateway API key reached its current period usage limit."
PROJECT_MESSAGE = "Project has reached its period spend budget."
PROMPT = " ".join(["word"] * 984)  # 984 prompt tokens + 8 completion tokens = 0.001
BODY = {"model": "mock-model", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}
COST = Decimal("0.001")
N = 10

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class Clock:
    """The gateways' request time; the tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")


class Decisions(logging.Handler):
    """The decision log lines of every gateway in this process."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "gateway.decision":
            self.records.append(json.loads(record.getMessage()))


class Deployment:
    def __init__(self, urls: list[str], admin: Store, loop: LoopThread, clock: Clock) -> None:
        self.urls, self.admin, self.loop, self.clock = urls, admin, loop, clock

    def store(self, coro: Any) -> Any:
        return self.loop.run(coro)


@pytest.fixture(params=[("sqlite", 1), ("redis", 2)], ids=["sqlite", "postgres+redis-x2"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    kind, instances = request.param
    backends = make_backend(kind, tmp_path)
    backend: Backend = next(backends)
    clock = Clock()
    config = GatewayConfig(
        database=backend.database_url,
        usage_store=backend.usage_store_url,
        policy_dir=default_policy_dir(),
        reload_interval=0.0,
        admission_wait_seconds=60.0,
    )
    loop = LoopThread()
    try:
        with ExitStack() as stack:
            # The servers' Redis prefix is the one derived from the database URL. The
            # admin store closes last (its close flushes the ledger the servers share,
            # so it must not race their own last flushes).
            admin = (
                backend.open(redis_prefix=default_prefix(backend.database_url))
                if backend.usage_store_url
                else backend.open()
            )
            loop.run(admin.migrate())
            stack.callback(lambda: loop.run(admin.close(), timeout=60))
            servers = []
            for instance in range(instances):
                holder = shipped_policies.holder(instance)
                server = GatewayServer(create_app(config, clock=clock, policy=holder), config)
                server.start()
                stack.callback(server.stop)
                servers.append(server)
            yield Deployment([s.url for s in servers], admin, loop, clock)
    finally:
        loop.stop()
        backends.close()


@pytest.fixture
def decisions() -> Iterator[Decisions]:
    handler = Decisions()
    logger = logging.getLogger("gateway.decision")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def _burst(urls: list[str], token: str, requests: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=requests, max_keepalive_connections=requests)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        f"{urls[i % len(urls)]}/v1/chat/completions",
                        json=BODY,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    for i in range(requests)
                )
            )
        )


def _one(url: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def _new_key(d: Deployment, project: str = "default") -> tuple[str, str]:
    key, token = d.store(d.admin.create_key(project, None, "budget e2e"))
    return key.id, token


def test_a_day_budget_holds_exactly_and_resets_the_next_day(
    deployment: Deployment, decisions: Decisions
) -> None:
    d = deployment
    key_id, token = _new_key(d)
    d.store(d.admin.set_key_budget(key_id, Budget(amount=N * COST, period="day")))

    answers = asyncio.run(_burst(d.urls, token, 3 * N))
    assert sum(r.status_code == 200 for r in answers) == N
    refused = [r for r in answers if r.status_code != 200]
    assert all(r.status_code == 401 for r in refused), [r.text for r in refused]
    assert all(r.json()["message"] == KEY_MESSAGE for r in refused)
    window = ("2027-03-01T00:00:00Z",)
    usage, _ = d.store(d.admin.budget_usage((key_id, *window), None))
    assert (usage.usage, usage.reserved) == (N * COST, Decimal(0))
    assert any(r.get("reason_code") == "period_budget" for r in decisions.records)

    # Still refused at the day's last second, on every instance; the next day admits.
    d.clock.now = datetime(2027, 3, 1, 23, 59, 59, tzinfo=UTC)
    for url in d.urls:
        assert _one(url, token).status_code == 401
    d.clock.now += timedelta(seconds=1)
    for url in d.urls:
        assert _one(url, token).status_code == 200
    usage, _ = d.store(d.admin.budget_usage((key_id, "2027-03-02T00:00:00Z"), None))
    assert usage.usage == len(d.urls) * COST
    # The all-time usage kept counting across the windows.
    assert d.store(d.admin.get_key(key_id)).usage == (N + len(d.urls)) * COST


def test_a_project_budget_refuses_every_key_of_the_project(
    deployment: Deployment, decisions: Decisions
) -> None:
    d = deployment
    d.store(d.admin.create_project("budgeted", "default", "hybrid"))
    d.store(d.admin.set_project_budget("budgeted", Budget(amount=2 * COST, period="hour")))
    (_, first), (_, second) = _new_key(d, "budgeted"), _new_key(d, "budgeted")
    assert _one(d.urls[0], first).status_code == 200
    assert _one(d.urls[-1], second).status_code == 200
    for url, token in ((d.urls[0], second), (d.urls[-1], first)):
        refused = _one(url, token)
        assert (refused.status_code, refused.json()["message"]) == (403, PROJECT_MESSAGE)
    assert any(r.get("reason_code") == "project_period_budget" for r in decisions.records)
    d.clock.now += timedelta(hours=1)  # the next hour's window
    assert _one(d.urls[-1], first).status_code == 200


def test_a_budget_set_in_a_policy_file_is_held_like_a_stored_one(tmp_path: Path) -> None:
    """`budgets:` in a *.iam.yaml file (no budget in the key store): the project's
    window holds exactly two one-tenth-of-a-cent requests, then the documented 403."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for source in Path(default_policy_dir()).iterdir():
        if source.is_file():
            (policies / source.name).write_text(source.read_text(encoding="utf-8"))
    (policies / "budgets.iam.yaml").write_text(
        "version: 1\n"
        "budgets:\n"
        "  - id: yaml-daily\n"
        "    applies_to: {project: from-yaml}\n"
        f'    amount: "{2 * COST}"\n'
        "    period: day\n"
    )
    clock = Clock()
    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'gateway.db'}",
        policy_dir=str(policies),
        reload_interval=0.0,
    )
    loop = LoopThread()
    server = GatewayServer(create_app(config, clock=clock), config)
    server.start()
    admin = Backend("sqlite", config.database).open()
    try:
        loop.run(admin.migrate())
        loop.run(admin.create_project("from-yaml", "default", "hybrid"))
        _, token = loop.run(admin.create_key("from-yaml", None, "policy budget"))
        answers = asyncio.run(_burst([server.url], token, 6))
        assert sum(r.status_code == 200 for r in answers) == 2
        refused = [r for r in answers if r.status_code != 200]
        assert all(r.json()["message"] == PROJECT_MESSAGE for r in refused)
        _, usage = loop.run(admin.budget_usage(None, ("from-yaml", "2027-03-01T00:00:00Z")))
        assert usage.usage == 2 * COST
        assert loop.run(admin.get_project("from-yaml")).budget is None  # only the file sets it
        clock.now += timedelta(days=1)
        assert _one(server.url, token).status_code == 200
    finally:
        loop.run(admin.close())
        loop.stop()
        server.stop()


def test_a_stored_budget_and_a_policy_file_budget_both_hold(tmp_path: Path) -> None:
    """Both are ceilings: a key with a stored day budget of 5 (requests' worth) and a
    policy-file day budget of 3 is refused after 3, and so is a key with a stored 3
    and a policy-file 5. The file's budget used to take the place of the stored one,
    so the second key spent 5."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for source in Path(default_policy_dir()).iterdir():
        if source.is_file():
            (policies / source.name).write_text(source.read_text(encoding="utf-8"))
    clock = Clock()
    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'gateway.db'}",
        policy_dir=str(policies),
        reload_interval=0.0,
    )
    admin = Backend("sqlite", config.database).open()
    loop = LoopThread()
    loop.run(admin.migrate())
    loop.run(admin.ensure_defaults())
    stricter_file, file_token = loop.run(admin.create_key("default", None, "file 3, stored 5"))
    stricter_store, store_token = loop.run(admin.create_key("default", None, "file 5, stored 3"))
    (policies / "budgets.iam.yaml").write_text(
        "version: 1\n"
        "budgets:\n"
        f'  - {{applies_to: {{key: {stricter_file.id}}}, amount: "{3 * COST}", period: day}}\n'
        f'  - {{applies_to: {{key: {stricter_store.id}}}, amount: "{5 * COST}", period: day}}\n'
    )
    server = GatewayServer(create_app(config, clock=clock), config)
    server.start()
    try:
        keys = ((stricter_file, file_token, 5 * COST), (stricter_store, store_token, 3 * COST))
        for key, token, stored in keys:
            loop.run(admin.set_key_budget(key.id, Budget(amount=stored, period="day")))
            statuses = [_one(server.url, token).status_code for _ in range(6)]
            assert statuses == [200, 200, 200, 401, 401, 401], (key.description, statuses)
            refused = _one(server.url, token)
            assert refused.json()["message"] == KEY_MESSAGE
            usage, _ = loop.run(admin.budget_usage((key.id, "2027-03-01T00:00:00Z"), None))
            assert usage.usage == 3 * COST
        clock.now += timedelta(days=1)  # the next day admits again, for both keys
        for _key, token, _stored in keys:
            assert _one(server.url, token).status_code == 200
    finally:
        loop.run(admin.close())
        loop.stop()
        server.stop()
