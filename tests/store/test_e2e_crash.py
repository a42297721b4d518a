"""Issue 5's crash acceptance: `kill -9` of `gateway serve` during 50 in-flight streams.

The gateway forwards `openrouter/gpt-4o` to a paced mock upstream (20 chunks 20 ms
apart, final usage chunk). A few streams complete first; their costs (catalog
prices x the usage the client saw) are the only usage that may ever be recorded.
Then 50 concurrent streams start and the gateway is killed once they are flowing.
After a restart on the same database: the key's usage is exactly the completed
costs (nothing lost, nothing charged for the killed streams), and once the
reservations' TTL has passed no reservation is left: the table (with the Redis
ledger: its `r:<id>` hashes) is empty and a request is admitted against a limit
of usage + 0.000001, which any leaked reservation would exceed.

The TTL is far longer than the test, so that no reservation of a stream still
flowing can expire (and be reclaimed by the next admission) before the kill,
however slowly a loaded machine admits the 50 streams: with a 2 s TTL one did,
and 29 flowing streams left 28 reservations. Its passing is then stood in for by
moving every reservation's expiry into the past once the gateway is dead; that
reclaim honours the TTL itself is tested in tests/store/test_store_ledger.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from store_backends import Backend, make_backend
from test_e2e_usage import _cli, _env, _free_port

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `bench/` is not part of the installed dist
    sys.path.insert(0, str(REPO))

from bench.mock_upstream import MockUpstream, start_mock_upstream  # noqa: E402

MODEL = "openrouter/gpt-4o"
RESERVATION_TTL_S = 3600.0
COMPLETED_BEFORE_CRASH = 3
IN_FLIGHT = 50
# Killed once every stream has its first chunk, or earlier if one is half way
# through (10 of 20 chunks), so that no in-flight stream can have completed.
HALF_WAY_CHUNKS = 10
UPSTREAM_KEY_ENV = "CRASH_TEST_UPSTREAM_KEY"
TINY = Decimal("0.000001")

# A hang guard, not a deadline: the test starts two gateways and a dozen `gateway`
# CLI processes, which at load 12 on two cores took more than 120 s in all.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _prices() -> tuple[Decimal, Decimal]:
    """Input and output price per million tokens of MODEL, from the shipped catalog."""
    catalog = yaml.safe_load((REPO / "policies" / "catalog.yaml").read_text(encoding="utf-8"))
    entry = catalog["models"]["gpt-4o"]["providers"]["openrouter"]
    return Decimal(entry["input_price"]), Decimal(entry["output_price"])


def _cost(usage: dict[str, int]) -> Decimal:
    input_price, output_price = _prices()
    million = Decimal(1_000_000)
    return (
        usage["prompt_tokens"] * input_price + usage["completion_tokens"] * output_price
    ) / million


def _server_env(backend: Backend, upstream: MockUpstream) -> dict[str, str]:
    env = _env(backend)
    env["GATEWAY_RESERVATION_TTL_SECONDS"] = str(RESERVATION_TTL_S)
    env["GATEWAY_PROVIDERS"] = json.dumps(
        [{"id": "openrouter", "base_url": upstream.base_url, "api_key_env": UPSTREAM_KEY_ENV}]
    )
    env[UPSTREAM_KEY_ENV] = "sk-crash-test-not-a-secret"
    return env


@contextmanager
def _gateway(env: dict[str, str], cwd: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gateway serve` on a free port; yields its URL and process (stopped on exit)."""
    port = _free_port()
    log_path = cwd / f"server-{port}.log"
    with log_path.open("w") as log:
        command = [sys.executable, "-m", "proxy.cli", "serve", "--host", "127.0.0.1"]
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=1) as client:
        while True:
            assert process.poll() is None, "the gateway exited at start-up; see server-*.log"
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not become ready in 60 s"
            await asyncio.sleep(0.1)


class _Stream:
    """What the client saw of one streamed request."""

    def __init__(self) -> None:
        self.chunks = 0
        self.usage: dict[str, int] | None = None
        self.done = False


async def _stream(
    client: httpx.AsyncClient, url: str, token: str, seen: _Stream, half_way: asyncio.Event
) -> None:
    body = {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "count to twenty please"}],
    }
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with client.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    seen.done = True
                    continue
                event = json.loads(data)
                if event.get("usage"):
                    seen.usage = event["usage"]
                if event.get("choices"):
                    seen.chunks += 1
                    if seen.chunks >= HALF_WAY_CHUNKS:
                        half_way.set()
    except httpx.HTTPError:
        pass  # the gateway was killed under this stream


def _reservation_count(backend: Backend) -> int:
    if backend.name == "redis":
        return _redis_reservation_count(backend)
    if backend.name == "sqlite":
        with sqlite3.connect(backend.database_url.removeprefix("sqlite:///")) as conn:
            row = conn.execute("SELECT count(*) FROM reservations").fetchone()
    else:
        import psycopg

        with psycopg.connect(backend.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM reservations").fetchone()
    assert row is not None
    count: int = row[0]
    return count


def _redis_reservation_count(backend: Backend) -> int:
    """Reservations held in the Redis ledger (one member of `held` each, and any `r:<id>`
    hash of the previous layout) under the prefix the gateway processes derive from the
    database URL."""
    import redis

    from proxy.store.redis_ledger import default_prefix

    assert backend.usage_store_url is not None
    client = redis.Redis.from_url(backend.usage_store_url)
    prefix = default_prefix(backend.database_url)
    try:
        legacy = sum(1 for _ in client.scan_iter(match=f"{prefix}r:*", count=1000))
        return int(client.zcard(f"{prefix}held")) + legacy
    finally:
        client.close()


def _expire_reservations(backend: Backend) -> None:
    """Move every reservation's expiry into the past, as if the TTL had passed (in the
    backend's own clock and format: SQLite's Unix seconds, PostgreSQL's `now()`, the
    Redis ledger's `held` index (and the previous layout's `exp`) in Redis milliseconds,
    whose scores reclaim reads)."""
    if backend.name == "redis":
        import redis

        from proxy.store.redis_ledger import default_prefix

        assert backend.usage_store_url is not None
        client = redis.Redis.from_url(backend.usage_store_url)
        try:
            for index in ("held", "exp"):
                name = f"{default_prefix(backend.database_url)}{index}"
                for reservation in client.zrange(name, 0, -1):
                    client.zadd(name, {reservation: 0}, xx=True)
        finally:
            client.close()
    elif backend.name == "sqlite":
        with sqlite3.connect(backend.database_url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE reservations SET expires_at = 0")
    else:
        import psycopg

        with psycopg.connect(backend.database_url) as conn:
            conn.execute("UPDATE reservations SET expires_at = now() - interval '1 hour'")


def _usage(backend: Backend, cwd: Path, key_id: str) -> Decimal:
    return Decimal(str(_cli(backend, cwd, "keys", "show", key_id)["usage"]))


async def _completed_cost(client: httpx.AsyncClient, url: str, token: str) -> Decimal:
    seen = _Stream()
    await _stream(client, url, token, seen, asyncio.Event())
    assert seen.done and seen.usage is not None, "a stream did not complete"
    return _cost(seen.usage)


async def _until_flowing(streams: list[_Stream], half_way: asyncio.Event) -> None:
    """Return once every stream has its first chunk, or one is half way through
    (so that none can have completed), or after 30 s."""
    deadline = time.monotonic() + 30
    while not half_way.is_set() and time.monotonic() < deadline:
        if all(seen.chunks > 0 for seen in streams):
            return
        await asyncio.sleep(0.005)


async def _settled(backend: Backend, cwd: Path, key_id: str, expected: Decimal) -> Decimal:
    """The key's usage once it reaches `expected` (settlement follows the stream's
    end by a moment) or after 60 s, whichever comes first: each look is a `gateway`
    CLI process, a few seconds apiece on a loaded machine."""
    deadline = time.monotonic() + 60
    while True:
        usage = await asyncio.to_thread(_usage, backend, cwd, key_id)
        if usage == expected or time.monotonic() > deadline:
            return usage
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis"])
def test_kill_9_during_streams_loses_no_usage_and_leaks_no_reservation(
    kind: str, tmp_path: Path
) -> None:
    backends = make_backend(kind, tmp_path)
    backend = next(backends)
    try:
        asyncio.run(_crash_and_restart(backend, tmp_path))
    finally:
        backends.close()


async def _crash_and_restart(backend: Backend, cwd: Path) -> None:
    key = await asyncio.to_thread(_cli, backend, cwd, "keys", "create", "--project", "default")
    # Gateway credentials bill the organization: give it more than the test can spend.
    await asyncio.to_thread(_cli, backend, cwd, "orgs", "credits", "default", "1000.00")
    upstream = await start_mock_upstream("127.0.0.1", 0, "paced")
    env = _server_env(backend, upstream)
    limits = httpx.Limits(max_connections=IN_FLIGHT + 10, max_keepalive_connections=IN_FLIGHT)
    try:
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            with _gateway(env, cwd) as (url, process):
                await _wait_ready(url, process)
                completed = Decimal(0)
                for _ in range(COMPLETED_BEFORE_CRASH):
                    completed += await _completed_cost(client, url, key["token"])
                assert await _settled(backend, cwd, key["id"], completed) == completed

                streams = [_Stream() for _ in range(IN_FLIGHT)]
                half_way = asyncio.Event()
                tasks = [
                    asyncio.create_task(_stream(client, url, key["token"], seen, half_way))
                    for seen in streams
                ]
                await _until_flowing(streams, half_way)
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                await asyncio.gather(*tasks)

            flowing = sum(1 for seen in streams if seen.chunks > 0)
            assert flowing > 0, "no stream was in flight when the gateway was killed"
            assert not any(seen.done for seen in streams), "a stream completed before the kill"
            # Nothing ran since the kill: every admitted in-flight stream left its
            # reservation behind (streams with a chunk were admitted; others may be).
            left = await asyncio.to_thread(_reservation_count, backend)
            assert flowing <= left <= IN_FLIGHT
            # No usage lost for completed requests, none charged for the killed ones.
            assert await asyncio.to_thread(_usage, backend, cwd, key["id"]) == completed

            # Any leaked reservation (each holds at least 64 tokens at the output
            # price) would refuse a request against this limit.
            tight = completed + TINY
            await asyncio.to_thread(_cli, backend, cwd, "keys", "set-limit", key["id"], str(tight))
            await asyncio.to_thread(_expire_reservations, backend)
            with _gateway(env, cwd) as (url, process):
                await _wait_ready(url, process)
                assert await asyncio.to_thread(_usage, backend, cwd, key["id"]) == completed
                after = await _completed_cost(client, url, key["token"])
                total = await _settled(backend, cwd, key["id"], completed + after)
                assert total == completed + after
                assert await asyncio.to_thread(_reservation_count, backend) == 0
    finally:
        await upstream.close()
