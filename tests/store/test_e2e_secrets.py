"""Issue 12 point 6 through `gateway serve` on the shared backends: two instances with
`GATEWAY_SECRET_KEY` on a PostgreSQL (and PostgreSQL + Redis) database written without
it. The first to start keys the token hashes and encrypts the provider key; the key
works through both instances."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from store_backends import Backend

from proxy.secret_box import KEYED_PREFIX, SecretBox, open_source

REPO = Path(__file__).resolve().parents[2]
SECRET = secrets.token_urlsafe(32)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(backend: Backend, cwd: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATABASE": backend.database_url, "GATEWAY_SECRET_KEY": SECRET}
    env |= {"GATEWAY_USAGE_STORE": backend.usage_store_url} if backend.usage_store_url else {}
    env["PYTHONPATH"] = str(REPO)
    port = _free_port()
    log_path = cwd / f"server-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not become ready in 60 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_two_instances_protect_and_serve_an_old_database(
    shared_backend: Backend, tmp_path: Path
) -> None:
    backend = shared_backend

    async def write_plainly() -> str:
        store = backend.open()
        try:
            await store.migrate()
            await store.ensure_defaults()
            _, token = await store.create_key("default", None, "before the secret")
            await store.set_provider_key("default", "openai", {"value": "sk-before"})
            return token
        finally:
            await store.close()

    token = asyncio.run(write_plainly())
    with ExitStack() as stack:
        urls = [stack.enter_context(_serving(backend, tmp_path)) for _ in range(2)]
        for url in urls:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text

    async def read_back() -> tuple[list[str], dict[str, str]]:
        store = backend.open()
        try:
            keys = await store.list_keys()
            project = await store.get_project("default")
            return [key.token_hash for key in keys], project.provider_keys["openai"]
        finally:
            await store.close()

    hashes, stored = asyncio.run(read_back())
    assert hashes and all(token_hash.startswith(KEYED_PREFIX) for token_hash in hashes)
    assert set(stored) == {"encrypted"}
    assert open_source(stored, SecretBox(SECRET)) == "sk-before"
