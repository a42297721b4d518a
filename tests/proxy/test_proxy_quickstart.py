"""The README quickstart as a new user runs it: create a key, serve, one curl.

Runs the installed `gateway` console script in a fresh temporary directory (so the
default `sqlite:///./gateway.db` is a new database), exactly the commands of the
README's first block after the install step, and then the README's curl.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from proxy_test_servers import free_port

from proxy.mock_provider import MOCK_REPLY

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _first_shell_block() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"```sh\n(.*?)```", text, re.S)
    assert match is not None, "README.md has no sh block"
    return match.group(1)


def _wait_ready(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gateway serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("gateway serve did not become ready within 60 s")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl, as the README does")
def test_readme_quickstart(tmp_path: Path) -> None:
    block = _first_shell_block()
    assert "gateway keys create --project default" in block
    assert "gateway serve" in block
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    created = subprocess.run(
        [str(BIN / "gateway"), "keys", "create", "--project", "default", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = json.loads(created.stdout)["token"]
    assert token.startswith("llmgtwy_")
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "gateway"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, server)
        curl = subprocess.run(
            [
                "curl",
                "-sS",
                f"{url}/v1/chat/completions",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"model": "mock-model", "messages": [{"role": "user", "content": "Hello!"}]}',
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        answer = json.loads(curl.stdout)
        assert answer["choices"][0]["message"]["content"] == MOCK_REPLY
        assert answer["model"] == "mock-model"
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert (tmp_path / "gateway.db").exists()
    # The server's whole log output of the run: decision lines, never the token.
    assert '"decision":"allow"' in output
    assert token not in output
