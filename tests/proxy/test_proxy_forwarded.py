"""Issue 12 point 5: `X-Forwarded-For` / `Forwarded` count only from `trusted_proxies`.

Before, uvicorn believed `X-Forwarded-For` from 127.0.0.1, so a new header value per
guess was never throttled; now the real peer is the client unless it is listed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from proxy_deployment import Deployment, deployed
from proxy_helpers import auth, chat, make_tenant
from shipped_policy import ShippedPolicies

from proxy.config import ConfigError, load_config
from proxy.forwarded import TrustedProxies

ADMIN = "admin-token-for-forwarded-tests-0123456789"
LIMIT = 10  # wrong admin tokens per address before 429 (proxy.throttle defaults)


@pytest.mark.parametrize(
    ("trusted", "peer", "headers", "client"),
    [
        ((), "127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, "127.0.0.1"),
        (("10.0.0.0/8",), "192.0.2.1", {"x-forwarded-for": "203.0.113.9"}, "192.0.2.1"),
        (("10.0.0.0/8",), "10.1.2.3", {"x-forwarded-for": "203.0.113.9"}, "203.0.113.9"),
        # The client's own (forged) entry is left of what the trusted proxies appended.
        (
            ("10.0.0.0/8",),
            "10.1.2.3",
            {"x-forwarded-for": "1.2.3.4, 203.0.113.9, 10.9.9.9"},
            "203.0.113.9",
        ),
        (
            ("10.0.0.0/8",),
            "10.1.2.3",
            {"forwarded": 'for=1.2.3.4, for="[2001:db8::7]:443"'},
            "2001:db8::7",
        ),
        (
            ("10.0.0.0/8",),
            "10.1.2.3",
            {"forwarded": "for=198.51.100.4:8080;proto=https"},
            "198.51.100.4",
        ),
        (("10.0.0.0/8",), "10.1.2.3", {"x-forwarded-for": "unknown"}, "10.1.2.3"),
        (("10.0.0.0/8",), "10.1.2.3", {}, "10.1.2.3"),
        (("::1",), "::1", {"x-forwarded-for": "203.0.113.9"}, "203.0.113.9"),
    ],
)
def test_the_client_address(
    trusted: tuple[str, ...], peer: str, headers: dict[str, str], client: str
) -> None:
    assert TrustedProxies(trusted).client(peer, headers) == client


def test_a_bad_entry_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"`trusted_proxies`: `10\.0\.0/33` is not an IP"):
        load_config(None, {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1, 10.0.0/33"})
    config = load_config(None, {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"})
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")


# -- through the real server ------------------------------------------------------------


@pytest.fixture(scope="module")
def direct(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("direct"), compile_policy=shipped_policies.loader, admin_token=ADMIN
    ) as running:
        yield running


@pytest.fixture(scope="module")
def behind_proxy(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("proxied"),
        compile_policy=shipped_policies.loader,
        admin_token=ADMIN,
        trusted_proxies=("127.0.0.1",),
    ) as running:
        yield running


def _guess(url: str, forwarded_for: str) -> int:
    headers = {"Authorization": "Bearer wrong", "X-Forwarded-For": forwarded_for}
    return httpx.get(f"{url}/admin/orgs", headers=headers, timeout=10).status_code


def _decision_clients(deployment: Deployment, key_id: str) -> list[str | None]:
    lines = [line.split(" ", 2)[2] for line in deployment.logs.lines if "gateway.decision" in line]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [record.get("client") for record in records if record.get("key_id") == key_id]


def test_a_new_forwarded_address_per_guess_does_not_escape_the_throttle(
    direct: Deployment,
) -> None:
    statuses = [_guess(direct.url, f"198.51.100.{n}") for n in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


def test_the_decision_log_names_the_real_peer(direct: Deployment) -> None:
    tenant = make_tenant(direct.admin)
    headers = {**auth(tenant.token, "bearer"), "X-Forwarded-For": "203.0.113.9"}
    response = httpx.post(f"{direct.url}/v1/chat/completions", json=chat(), headers=headers)
    assert response.status_code == 200
    assert _decision_clients(direct, tenant.key.id) == ["127.0.0.1"]


def test_behind_a_trusted_proxy_each_forwarded_client_counts_apart(
    behind_proxy: Deployment,
) -> None:
    spread = [_guess(behind_proxy.url, f"198.51.100.{n}") for n in range(LIMIT + 1)]
    assert spread == [401] * (LIMIT + 1)
    same = [_guess(behind_proxy.url, "203.0.113.50") for _ in range(LIMIT + 1)]
    assert same == [401] * LIMIT + [429]
    tenant = make_tenant(behind_proxy.admin)
    headers = {**auth(tenant.token, "bearer"), "X-Forwarded-For": "203.0.113.9"}
    response = httpx.post(f"{behind_proxy.url}/v1/chat/completions", json=chat(), headers=headers)
    assert response.status_code == 200
    assert _decision_clients(behind_proxy, tenant.key.id) == ["203.0.113.9"]
