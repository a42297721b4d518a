"""Backends under test: SQLite always; PostgreSQL and PostgreSQL+Redis when reachable.

Helpers only; the fixtures built on them are in conftest.py (imported by name, not
through `conftest`, whose module name other test folders share).

Each PostgreSQL run gets its own schema (dropped afterwards) and each Redis run its
own key prefix (deleted afterwards), so runs never see each other's data. Without a
server the tests skip with the reason, except under CI (env `CI` set) where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.store import Store, open_store

T = TypeVar("T")

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_BASE_URL = f"postgresql://root@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}; start it to run these tests"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required because CI is set)")
    pytest.skip(reason)


@dataclass
class Backend:
    """How to open stores of one kind that all share one isolated database."""

    name: str
    database_url: str
    usage_store_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, **options: Any) -> Store:
        return open_store(self.database_url, self.usage_store_url, **{**self.options, **options})

    def run(self, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run(body())


def pg_url_with_schema(schema: str) -> str:
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


def _create_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def make_backend(kind: str, tmp_path: Path) -> Generator[Backend, None, None]:
    if kind == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")
        return
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    schema = f"gwtest_{secrets.token_hex(6)}"
    _create_schema(schema)
    try:
        if kind == "postgres":
            yield Backend("postgres", pg_url_with_schema(schema))
            return
        require_server("Redis", REDIS_HOST, REDIS_PORT)
        prefix = f"gwtest:{secrets.token_hex(6)}:"
        try:
            yield Backend(
                "redis",
                pg_url_with_schema(schema),
                REDIS_URL,
                {"redis_prefix": prefix, "flush_interval": 0.2},
            )
        finally:
            from proxy.store.redis_ledger import default_prefix

            _drop_redis_prefix(prefix)
            # Processes started by the tests (CLI, servers) use the derived prefix.
            _drop_redis_prefix(default_prefix(pg_url_with_schema(schema)))
    finally:
        _drop_schema(schema)
