"""Fixtures for the proxy tests: a real gateway (uvicorn) in front of a real upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from proxy_deployment import Deployment, deployed
from shipped_policy import ShippedPolicies


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    """One gateway per test module (shared to keep the suite fast; tests use fresh keys)."""
    with deployed(
        tmp_path_factory.mktemp("gateway"), compile_policy=shipped_policies.loader
    ) as running:
        yield running
