"""Start a real gateway for the benchmark: temp config, `gateway serve`, a real key.

The gateway forwards to the benchmark's mock upstreams through two ordinary
provider entries of the catalog, so the measured path is the production one
(key lookup, input document, policy, usage reservation, forwarding through
the shared upstream client, settlement):

- ``openai`` → the instant mock (plain requests, c=1 TTFT),
- ``openrouter`` → the paced mock (100 concurrent paced streams),
- ``anthropic`` → the instant mock (the Messages API, `bench.agent_apis`).

Both providers get a dummy gateway credential, so requests are billed to the
``default`` organization's credits, which are raised so a soak cannot run dry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgspec
import yaml

from bench.loadgen import Endpoint, chat_body
from bench.processes import (
    GATEWAY_CORE,
    LOAD_CORE,
    ProcessGroup,
    free_port,
    inherited_environment,
    python_module,
)

__all__ = [
    "BACKENDS",
    "INSTANT_MODEL",
    "PACED_MODEL",
    "RunningGateway",
    "admin_json",
    "backend_urls",
    "fetch_text",
    "gateway_command",
    "start_gateway",
    "start_mocks",
]

BACKENDS = ("sqlite", "postgres-redis")
INSTANT_MODEL = "openai/gpt-4o"
"""Catalog model routed to the instant mock (explicit provider prefix)."""
PACED_MODEL = "openrouter/gpt-4o"
"""Same model routed to the paced mock."""
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_KEY"
BENCH_CREDITS = "1000000000.00"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


class RunningGateway(msgspec.Struct, frozen=True):
    """A started gateway: where it listens, its pid and the key to call it with."""

    base_url: str
    pid: int
    token: str
    log_path: str
    config_path: str = ""
    """The gateway's config file, for admin commands against its database."""

    def plain_chat(self) -> Endpoint:
        """A non-streamed chat request to the instant mock through this gateway."""
        return Endpoint.post_json(
            f"{self.base_url}/v1/chat/completions",
            chat_body(False, INSTANT_MODEL),
            [("Authorization", f"Bearer {self.token}")],
        )


def backend_urls(backend: str, work_dir: Path) -> dict[str, str]:
    """Config fields that select the ledger backend."""
    if backend == "sqlite":
        return {"database": f"sqlite:///{work_dir / 'gateway.db'}"}
    if backend == "postgres-redis":
        return {"database": POSTGRES_URL, "usage_store": REDIS_URL}
    raise ValueError(f"unknown backend `{backend}`; use one of {', '.join(BACKENDS)}")


def gateway_command() -> list[str]:
    """The `gateway` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "gateway"
    found = str(beside) if beside.exists() else shutil.which("gateway")
    if found is None:
        raise RuntimeError(
            "the `gateway` command is not installed; run `pip install -e .` in the repo"
        )
    return [found]


def _write_config(work_dir: Path, backend: str, port: int, instant: str, paced: str) -> Path:
    config = {
        "host": "127.0.0.1",
        "port": port,
        **backend_urls(backend, work_dir),
        "providers": [
            {"id": "openai", "base_url": instant, "api_key_env": UPSTREAM_KEY_ENV},
            {"id": "openrouter", "base_url": paced, "api_key_env": UPSTREAM_KEY_ENV},
            # The Messages API (bench.agent_apis) at the instant mock.
            {"id": "anthropic", "base_url": instant, "api_key_env": UPSTREAM_KEY_ENV},
        ],
    }
    path = work_dir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def admin_json(
    config: Path, *args: str, extra_env: dict[str, str] | None = None
) -> dict[str, object]:
    """Run one admin command (`gateway ARGS --config CONFIG --json`); its JSON object.
    `extra_env`: the gateway's own (another checkout's PYTHONPATH: its code, and its
    migrations, not this checkout's, open the database)."""
    command = [*gateway_command(), *args, "--config", str(config), "--json"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**inherited_environment(), **(extra_env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` exited with {done.returncode}: {done.stderr.strip()[-1500:]}"
        )
    result = json.loads(done.stdout)
    if not isinstance(result, dict):
        raise RuntimeError(f"`{' '.join(command)}` printed {done.stdout!r}, not a JSON object")
    return result


def _wait_ready(base_url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.1)
    raise RuntimeError(f"{base_url}/readyz did not answer 200 within {timeout_s} s ({last})")


def start_mocks(group: ProcessGroup) -> tuple[str, str]:
    """Start the `instant` and `paced` mock upstreams on the load core; their base URLs."""
    urls = []
    for mode in ("instant", "paced"):
        port = free_port()
        module = python_module("bench.mock_upstream", "--port", str(port), "--mode", mode)
        group.start(f"mock-{mode}", module, LOAD_CORE, port=port)
        urls.append(f"http://127.0.0.1:{port}/v1")
    return urls[0], urls[1]


def start_gateway(
    group: ProcessGroup,
    work_dir: Path,
    backend: str,
    instant_url: str,
    paced_url: str,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> RunningGateway:
    """Start `gateway serve` pinned to the gateway core (with several `workers`, free on
    every core), then create a key for it."""
    port = free_port()
    config = _write_config(work_dir, backend, port, instant_url, paced_url)
    env = {UPSTREAM_KEY_ENV: "sk-bench-not-a-secret", **(extra_env or {})}
    command = [*gateway_command(), "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    core = GATEWAY_CORE if workers == 1 else None
    name = f"gateway-{backend}" if workers == 1 else f"gateway-{backend}-{workers}-workers"
    process = group.start(name, command, core, env=env, port=port)
    base_url = f"http://127.0.0.1:{port}"
    # Each worker builds the app (policy compiled) after the supervisor did: on a
    # loaded machine two workers took 13-25 s to answer.
    _wait_ready(base_url, 20.0 if workers == 1 else 60.0)
    # `gateway serve` has created org and project `default` on a fresh database.
    admin_json(config, "orgs", "credits", "default", BENCH_CREDITS, extra_env=extra_env)
    key = admin_json(
        config,
        "keys",
        "create",
        "--project",
        "default",
        "--description",
        "bench",
        extra_env=extra_env,
    )
    token = key.get("token")
    if not isinstance(token, str):
        raise RuntimeError(f"`gateway keys create --json` printed no token: {key!r}")
    log_path = str(work_dir / f"gateway-{backend}.log")
    return RunningGateway(base_url, process.pid, token, log_path, str(config))


def fetch_text(url: str) -> str | None:
    """GET ``url`` and return its body, or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body.decode() if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None
