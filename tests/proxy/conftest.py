"""Fixtures for the proxy tests: a real gateway (uvicorn) in front of a real upstream."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from proxy_deployment import (
    DOWN_KEY_ENV,
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    AdminStore,
    Deployment,
    LogCapture,
    gateway_config,
)
from proxy_test_servers import GatewayServer, UpstreamServer

from proxy.app import create_app
from proxy.policy import PolicyHolder, engine_loader


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("gateway")
    logs = LogCapture()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    saved = {name: os.environ.get(name) for name in (UPSTREAM_KEY_ENV, DOWN_KEY_ENV)}
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    os.environ[DOWN_KEY_ENV] = "gsk-down-test"
    upstream = UpstreamServer()
    upstream.start()
    config = gateway_config(tmp, upstream)
    holder = PolicyHolder(config.policy_dir, config.catalog_path, loader=engine_loader)  # TEMP
    gateway = GatewayServer(create_app(config, policy=holder))
    gateway.start()
    admin = AdminStore(str(tmp / "gateway.db"))
    try:
        yield Deployment(gateway, upstream, admin, logs)
    finally:
        admin.close()
        gateway.stop()
        upstream.stop()
        root.removeHandler(logs)
        root.setLevel(previous_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
