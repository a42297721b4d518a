"""The uvicorn settings `gateway serve` uses and its start-up line (issue 16)."""

from __future__ import annotations

import re
import socket

import pytest
from shipped_policy import ShippedPolicies

from proxy.app import create_app
from proxy.config import ConfigError, GatewayConfig, load_config
from proxy.server import PortUnavailable, announcement, bind, uvicorn_config


def test_uvicorn_never_rewrites_client_addresses_from_headers(
    shipped_policies: ShippedPolicies,
) -> None:
    config = GatewayConfig(keep_alive_timeout=3.0)
    settings = uvicorn_config(create_app(config, policy=shipped_policies.holder()), config)
    assert settings.proxy_headers is False
    assert settings.timeout_keep_alive == 3.0


def test_announcement_says_where_and_whether_the_dashboard_is_on() -> None:
    with bind("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        off = announcement(GatewayConfig(), sock)
        on = announcement(GatewayConfig(admin_token="t" * 32), sock)
    url = f"http://127.0.0.1:{port}"
    assert off.startswith(f"listening on {url} (API {url}/v1, policy ")
    assert off.endswith("dashboard and admin API off (set GATEWAY_ADMIN_TOKEN to turn them on)")
    assert on.endswith(f"dashboard {url}/dashboard and admin API {url}/admin on")


def test_bind_names_a_host_that_does_not_resolve() -> None:
    with pytest.raises(PortUnavailable, match="does not resolve"):
        bind("no-such-host.invalid", 0).close()


def test_bind_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortUnavailable, match="already in use"):
            bind("127.0.0.1", taken.getsockname()[1]).close()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("GATEWAY_MAX_CONNECTIONS", "0", "field `max_connections`: Expected `int` >= 1"),
        ("GATEWAY_HEADER_READ_TIMEOUT", "0", "field `header_read_timeout`: Expected `float` > 0.0"),
        ("GATEWAY_MAX_JSON_DEPTH", "0", "field `max_json_depth`: Expected `int` >= 1"),
    ],
)
def test_limits_that_would_refuse_everything_are_config_errors(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(None, {variable: value})
