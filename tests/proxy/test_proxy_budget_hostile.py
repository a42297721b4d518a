"""Period budgets under hostile shapes, through the real server (issue 13 point 1): a
burst far over the budget, a client that leaves mid-stream, an upstream that fails.
Each must leave the key's window as a client would expect: exactly the budget's worth
admitted, nothing reserved afterwards, charged what was relayed and nothing for a
failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from proxy_deployment import Deployment, deployed
from proxy_helpers import admin_json, chat
from shipped_policy import ShippedPolicies

ADMIN = "admin-budget-hostile-token"
# Far above anything a test here waits: the 190 requests of the burst wait for the ten
# admitted ones to settle before the settled figures refuse them (401); on a loaded
# machine that took longer than the default 10 s admission wait (429 instead), and no
# upstream call may meet the fixture's usual 2 s connect or read timeout (504).
WAIT_LONGER_THAN_THE_TEST_S = 600.0


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("budget-hostile"),
        compile_policy=shipped_policies.loader,
        admin_token=ADMIN,
        admission_wait_seconds=WAIT_LONGER_THAN_THE_TEST_S,
        upstream_connect_timeout=WAIT_LONGER_THAN_THE_TEST_S,
        upstream_read_timeout=WAIT_LONGER_THAN_THE_TEST_S,
    ) as d:
        yield d


def _admin(d: Deployment, method: str, path: str, body: Any = None) -> Any:
    return admin_json(d.url, ADMIN, method, path, body)


def _key(d: Deployment, budget: str | None) -> tuple[str, dict[str, str]]:
    created = _admin(d, "POST", "/keys", {"project": "default", "budget": budget})
    return created["id"], {"Authorization": f"Bearer {created['token']}"}


def _window(d: Deployment, key_id: str) -> dict[str, str]:
    window: dict[str, str] = _admin(d, "GET", f"/keys/{key_id}")["period_budget"]
    return window


def _settled_window(d: Deployment, key_id: str) -> dict[str, str]:
    """The window once nothing is reserved; settlement after a client left runs on the
    gateway's own time, so wait for it (bounded), never assert a duration."""
    deadline = time.monotonic() + 20
    window = _window(d, key_id)
    while Decimal(window["reserved"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        window = _window(d, key_id)
    return window


def test_a_burst_of_200_admits_exactly_the_budgets_ten(gateway: Deployment) -> None:
    url = f"{gateway.url}/v1/chat/completions"
    probe_id, probe = _key(gateway, None)
    assert httpx.post(url, json=chat(), headers=probe, timeout=30).status_code == 200
    cost = Decimal(_admin(gateway, "GET", f"/keys/{probe_id}")["usage"])
    assert cost > 0
    key_id, headers = _key(gateway, f"{cost * 10}/day")

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            answers = await asyncio.gather(
                *(client.post(url, json=chat(), headers=headers) for _ in range(200))
            )
            return [answer.status_code for answer in answers]

    statuses = asyncio.run(burst())
    assert (statuses.count(200), statuses.count(401)) == (10, 190), statuses
    window = _settled_window(gateway, key_id)
    assert (Decimal(window["usage"]), Decimal(window["reserved"])) == (cost * 10, 0)


def test_a_client_leaving_mid_stream_is_charged_what_was_relayed(gateway: Deployment) -> None:
    key_id, headers = _key(gateway, "1/day")
    url = f"{gateway.url}/v1/chat/completions"
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", url, json=chat(content="wait", stream=True), headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()  # kept: dropping it would close the response
        next(chunks)
        held = Decimal(_window(gateway, key_id)["reserved"])
        assert held > 0
    # The client left: the upstream call is cancelled, the reservation released.
    window = _settled_window(gateway, key_id)
    assert Decimal(window["reserved"]) == 0
    assert 0 < Decimal(window["usage"]) < held  # what was relayed, not the bound
    again = httpx.post(url, json=chat(), headers=headers, timeout=30)
    assert again.status_code == 200, again.text


def test_a_failed_upstream_call_charges_nothing_to_the_window(gateway: Deployment) -> None:
    key_id, headers = _key(gateway, "1/day")
    url = f"{gateway.url}/v1/chat/completions"
    failed = httpx.post(url, json=chat(content="fail"), headers=headers, timeout=30)
    assert failed.status_code == 503
    down = httpx.post(url, json=chat("groq/llama-3.3-70b-instruct"), headers=headers, timeout=30)
    assert down.status_code == 502, down.text
    window = _window(gateway, key_id)
    assert (window["usage"], window["reserved"]) == ("0", "0")
