"""Fixtures giving each store test its backends (see store_backends.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import Backend, make_backend


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


@pytest.fixture(params=["postgres", "redis"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Backends meant for several gateway processes sharing one database."""
    yield from make_backend(request.param, tmp_path)


@pytest.fixture
def redis_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend("redis", tmp_path)
