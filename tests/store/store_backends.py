"""Backends under test: SQLite always; PostgreSQL and PostgreSQL+Redis when reachable.

Helpers only; the fixtures built on them are in conftest.py (imported by name, not
through `conftest`, whose module name other test folders share).

Each PostgreSQL run gets its own schema (dropped afterwards) and each Redis run its
own key prefix (deleted afterwards), so runs never see each other's data. Without a
server the tests skip with the reason, except under CI (env `CI` set) where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
import socket
import subprocess
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import pytest

from proxy.cli import main as gateway_main
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


def backend_env(backend: Backend) -> dict[str, str]:
    """The environment of a gateway process on `backend`: no other GATEWAY_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE"] = backend.database_url
    if backend.usage_store_url:
        env["GATEWAY_USAGE_STORE"] = backend.usage_store_url
    return env


def run_gateway_cli(
    env: Mapping[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS` run in this process, as `python -m proxy.cli ARGS` would run it in
    `cwd` with exactly `env`: its exit status (argparse's SystemExit included), stdout and
    stderr. A fresh interpreter per command cost about a second each (most of the store
    tests' time); the console script itself is still run as a process by
    test_admin_cli.py's process tests."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env, clear=True),
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            status = gateway_main(list(args))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["gateway", *args], status, out.getvalue(), err.getvalue())


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
