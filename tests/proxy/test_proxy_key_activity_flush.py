"""Per-key activity counts (proxy.key_activity) through the real server: batched in
memory, they still reach the database exactly, by the periodic flush and, for what is
left, by the flush of a graceful stop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from proxy_deployment import UPSTREAM_KEY, UPSTREAM_KEY_ENV, AdminStore, gateway_config
from proxy_helpers import chat, make_tenant
from proxy_test_servers import GatewayServer, UpstreamServer
from shipped_policy import ShippedPolicies

from proxy.app import create_app
from proxy.policy import PolicyHolder
from proxy.store.base import KeyActivity


def _serve(
    tmp: Path, upstream: UpstreamServer, interval: float, policy: PolicyHolder
) -> GatewayServer:
    config = gateway_config(tmp, upstream)
    app = create_app(config, activity_interval=interval, policy=policy)
    gateway = GatewayServer(app, config)
    gateway.start()
    return gateway


def _send(gateway: GatewayServer, token: str, count: int) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for _ in range(count):
            response = client.post(
                "/v1/chat/completions",
                json=chat("mock-model"),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text


def _stored(admin: AdminStore, key_id: str) -> KeyActivity | None:
    return admin(admin.store.key_activity([key_id])).get(key_id)


def test_a_graceful_stop_writes_every_count_and_a_running_gateway_within_its_interval(
    tmp_path: Path, shipped_policies: ShippedPolicies
) -> None:
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    upstream = UpstreamServer()
    upstream.start()
    try:
        # An interval no test run reaches: only the stop's flush can write the counts.
        gateway = _serve(tmp_path, upstream, interval=3600.0, policy=shipped_policies.holder(0))
        admin = AdminStore(str(tmp_path / "gateway.db"))
        try:
            tenant = make_tenant(admin)
            _send(gateway, tenant.token, 7)
            assert _stored(admin, tenant.key.id) is None  # still in the gateway's memory
        finally:
            gateway.stop()
        stored = _stored(admin, tenant.key.id)
        assert stored is not None and stored.requests == 7
        assert stored.prompt_tokens > 0 and stored.completion_tokens > 0
        assert stored.last_used_at is not None

        # A second instance on the same database adds to the totals within its interval.
        gateway = _serve(tmp_path, upstream, interval=0.2, policy=shipped_policies.holder(1))
        try:
            _send(gateway, tenant.token, 3)
            deadline = time.monotonic() + 10
            while (seen := _stored(admin, tenant.key.id)) is None or seen.requests < 10:
                assert time.monotonic() < deadline, f"counts not flushed: {seen}"
                time.sleep(0.05)
            assert seen.requests == 10
        finally:
            gateway.stop()
            admin.close()
        reopened = AdminStore(str(tmp_path / "gateway.db"))
        try:
            final = _stored(reopened, tenant.key.id)
            assert final is not None and final.requests == 10  # nothing counted twice
            assert final.prompt_tokens == 10 * stored.prompt_tokens // 7
        finally:
            reopened.close()
    finally:
        upstream.stop()
        os.environ.pop(UPSTREAM_KEY_ENV, None)
