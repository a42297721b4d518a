"""Issues 5 and 12's acceptance through the real server: `gateway serve`, mock provider.

Each chat request costs exactly 0.001 (`mock-model` costs 1.00 per million prompt
tokens and 2.00 per million completion tokens; the mock counts one prompt token per
word and `max_tokens: 8` cuts its reply to 8 completion tokens, so 984 words + 8
completion tokens = 984 * 1 + 8 * 2 = 1,000 millionths of a dollar), while the gateway
reserves about 5 times that (the bound counts the prompt's bytes, not its words). A
key with room for exactly N = 20 requests (limit 0.020), or an organization with
credits for exactly 20: 200 concurrent requests give exactly 20 successes, every other
answer is the documented 401 / 402 (requests that only in-flight reservations kept out
waited for them instead of being refused), and usage ends at exactly 0.020. With two
servers on PostgreSQL (and Redis) the requests are spread over both. Finally a key
disabled through the admin CLI is refused by a server within 1 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_backends import Backend, make_backend, run_gateway_cli

REPO = Path(__file__).resolve().parents[2]
LIMIT_MESSAGE = "Unauthorized: LLMGateway API key reached its usage limit."
INVALID_MESSAGE = (
    "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted "
    "or disabled. Go to the LLMGateway 'API Keys' page to generate a new token."
)
PROMPT = " ".join(["word"] * 984)  # 984 prompt tokens for the mock
# `max_tokens: 8` cuts the mock's reply to exactly 8 completion tokens.
BODY = {"model": "mock-model", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _env(backend: Backend) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE"] = backend.database_url
    if backend.usage_store_url:
        env["GATEWAY_USAGE_STORE"] = backend.usage_store_url
    env["PYTHONPATH"] = str(REPO)
    # The burst's last requests wait for the first ones to settle; on a loaded CI
    # machine that may take longer than the default 10 s, and a 429 is not the point.
    env["GATEWAY_ADMISSION_WAIT_SECONDS"] = "60"
    return env


def _cli(backend: Backend, cwd: Path, *args: str) -> dict[str, Any]:
    # In this process: the servers are separate processes all the same, and the CLI as a
    # process is covered by test_admin_cli.py.
    done = run_gateway_cli(_env(backend), cwd, *args, "--json")
    assert done.returncode == 0, done.stderr
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _servers(backend: Backend, cwd: Path, count: int) -> Iterator[list[str]]:
    """`count` gateway processes on `backend`, started together (the store lets several
    instances start at once: one migrates, the others wait), all ready when this yields.
    One after the other, the second one's start-up was a second wait of a few seconds."""
    with ExitStack() as stack:
        started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        ports: set[int] = set()
        while len(ports) < count:  # none bound yet: a port may come back twice
            ports.add(_free_port())
        for port in sorted(ports):
            log_path = cwd / f"server-{port}.log"
            log = stack.enter_context(log_path.open("w"))
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "proxy.cli", "serve"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                ],
                cwd=cwd,
                env=_env(backend),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, process)
            started.append((f"http://127.0.0.1:{port}", process, log_path))
        deadline = time.monotonic() + 60
        for url, process, log_path in started:
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not become ready in 60 s"
                time.sleep(0.1)
        yield [url for url, _, _ in started]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _chat(client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    return await client.post(
        f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )


N = 20
COST = Decimal("0.001")


async def _burst(urls: list[str], token: str) -> tuple[int, list[httpx.Response]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        burst = await asyncio.gather(
            *(_chat(client, urls[i % len(urls)], token) for i in range(200))
        )
        refusals = [r for r in burst if r.status_code != 200]
    # And one more afterwards, on a new connection (the burst's may have idled past the
    # server's keep-alive): the settled figures refuse it at once.
    async with httpx.AsyncClient(timeout=60) as client:
        late = await _chat(client, urls[-1], token)
        assert late.status_code != 200, "admitted past the limit"
        return len(burst) - len(refusals), [*refusals, late]


@pytest.mark.parametrize(
    ("kind", "servers"),
    # A single-server Redis run adds little over the two-server one: left out to keep
    # the suite fast.
    [("sqlite", 1), ("postgres", 2), ("redis", 2)],
)
def test_limit_holds_exactly_through_the_server(kind: str, servers: int, tmp_path: Path) -> None:
    backends = make_backend(kind, tmp_path)
    backend = next(backends)
    try:
        _run_acceptance(backend, servers, tmp_path)
    finally:
        backends.close()


async def _credits(backend: Backend, org_id: str) -> Decimal:
    store = backend.open()
    try:
        return (await store.get_organization(org_id)).credits
    finally:
        await store.close()


def _run_acceptance(backend: Backend, servers: int, tmp_path: Path) -> None:
    limited = _cli(
        backend, tmp_path, "keys", "create", "--project", "default", "--usage-limit", str(N * COST)
    )
    _cli(backend, tmp_path, "orgs", "create", "paying", "--credits", str(N * COST))
    _cli(
        backend,
        tmp_path,
        "projects",
        "create",
        "on-credits",
        "--org",
        "paying",
        "--mode",
        "credits",
    )
    on_credits = _cli(backend, tmp_path, "keys", "create", "--project", "on-credits")
    with _servers(backend, tmp_path, servers) as urls:
        successes, refusals = asyncio.run(_burst(urls, limited["token"]))
        assert successes == N
        assert Decimal(_cli(backend, tmp_path, "keys", "show", limited["id"])["usage"]) == N * COST
        documented = {"error": True, "status": 401, "message": LIMIT_MESSAGE}
        assert all((r.status_code, r.json()) == (401, documented) for r in refusals)

        successes, refusals = asyncio.run(_burst(urls, on_credits["token"]))
        assert successes == N
        assert backend.run(lambda: _credits(backend, "paying")) == 0
        message = "Organization paying has insufficient credits"
        documented = {"error": True, "status": 402, "message": message}
        assert all((r.status_code, r.json()) == (402, documented) for r in refusals)

        # Revocation: disabled through the CLI (another instance), refused within 1 s.
        other = _cli(backend, tmp_path, "keys", "create", "--project", "default")
        assert httpx.post(
            f"{urls[-1]}/v1/chat/completions",
            json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {other['token']}"},
            timeout=30,
        ).is_success
        _cli(backend, tmp_path, "keys", "disable", other["id"])
        disabled_at = time.monotonic()
        while True:
            answer = httpx.get(
                f"{urls[-1]}/v1/models",
                headers={"Authorization": f"Bearer {other['token']}"},
                timeout=30,
            )
            if answer.status_code == 401:
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - disabled_at
        assert answer.json()["message"] == INVALID_MESSAGE
        assert elapsed <= 1.0  # the contract's bound
