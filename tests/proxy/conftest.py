"""Fixtures for the proxy tests: a real gateway (uvicorn) in front of a real upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from proxy_deployment import Deployment, deployed


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One gateway per test module (shared to keep the suite fast; tests use fresh keys)."""
    with deployed(tmp_path_factory.mktemp("gateway")) as running:
        yield running
