"""`gateway serve --workers 2`: both workers answer on one port, a SIGHUP reload reaches
both, a killed worker is reported and replaced, SIGTERM stops them all, and a key's
usage limit holds exactly across the two (SQLite shared in WAL mode)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from proxy_test_servers import free_port

from proxy.cli import main as gateway_main
from proxy.config import default_policy_dir
from proxy.mock_provider import mock_reply

OLD = "Unauthorized: No API key provided."
NEW = "Unauthorized: a key is needed."

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE"] = f"sqlite:///{database}"
    return env


class Supervised:
    """A running `gateway serve --workers 2` and every line it has written so far."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy.cli",
                "serve",
                "--config",
                str(workdir / "gateway.yaml"),
                "--port",
                self.url.rsplit(":", 1)[1],
                "--workers",
                "2",
            ],
            cwd=workdir,
            env=_env(workdir / "gateway.db"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 90
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited ({self.process.returncode}) before {what}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"not within 90 s: {what}\n{self.output}")
            time.sleep(0.05)

    def worker_pids(self) -> dict[str, int]:
        """The latest pid of each worker, from the supervisor's log."""
        found = re.findall(r"worker (\d+) started \(pid (\d+)\)", self.output)
        return {index: int(pid) for index, pid in found}

    def requests_by_worker(self, operation: str, status: int) -> dict[str, int]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        pattern = (
            rf'gateway_requests_total{{operation="{re.escape(operation)}",'
            rf'status="{status}",worker="(\d+)"}} (\d+)'
        )
        return {worker: int(count) for worker, count in re.findall(pattern, text)}

    def both_serving(self) -> bool:
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=2).text
        except httpx.TransportError:
            return False
        return all(f'gateway_upstream_responses_open{{worker="{w}"}}' in text for w in "12")

    def stop(self) -> int:
        self.process.terminate()
        status = self.process.wait(timeout=60)
        self._reader.join(10)
        return status


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(default_policy_dir(), tmp_path / "policies")
    (tmp_path / "gateway.yaml").write_text(
        f"policy_dir: {tmp_path / 'policies'}\nreload_interval: 0\n"
    )
    return tmp_path


@pytest.fixture
def supervised(workdir: Path) -> Iterator[Supervised]:
    running = Supervised(workdir)
    try:
        running.until(running.both_serving, "both workers serve")
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def _message(url: str) -> str:
    # A new connection each time: which worker accepts it is up to the kernel.
    message: str = httpx.get(f"{url}/v1/models", timeout=10).json()["message"]
    return message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_both_workers_answer_reload_restart_and_stop(workdir: Path, supervised: Supervised) -> None:
    url = supervised.url
    seen: list[str] = []
    supervised.until(
        lambda: (
            seen.append(_message(url)) is None
            and len(supervised.requests_by_worker("models.list", 401)) == 2
        ),
        "both workers answer on the one port",
    )
    assert all(message.startswith(OLD) for message in seen)

    rego = workdir / "policies" / "gateway.rego"
    rego.write_text(rego.read_text().replace(OLD, NEW))
    supervised.process.send_signal(signal.SIGHUP)
    supervised.until(
        lambda: supervised.output.count("policy reloaded from") == 2, "both workers reload"
    )
    before = supervised.requests_by_worker("models.list", 401)
    answers: list[str] = []
    supervised.until(
        lambda: (
            answers.append(_message(url)) is None
            and all(
                count > before[worker]
                for worker, count in supervised.requests_by_worker("models.list", 401).items()
            )
        ),
        "both workers answer after the reload",
    )
    assert all(message.startswith(NEW) for message in answers), answers

    killed = supervised.worker_pids()["1"]
    os.kill(killed, signal.SIGKILL)
    supervised.until(lambda: supervised.worker_pids()["1"] != killed, "worker 1 is replaced")
    assert f"worker 1 (pid {killed}) killed by SIGKILL; starting it again" in supervised.output
    supervised.until(supervised.both_serving, "the new worker 1 serves")

    pids = supervised.worker_pids().values()
    assert supervised.stop() == 0
    assert not any(_alive(pid) for pid in pids), supervised.output


def _prompt_costing_a_cent() -> str:
    """A chat prompt costing exactly 0.01 on `mock-model` (see tests/store/test_e2e_usage)."""
    long_prompt = {"messages": [{"role": "user", "content": "word " * 100}]}
    completion = len(mock_reply("chat.completions", long_prompt).split())
    return " ".join(["word"] * (10_000 - 2 * completion))


def _cli(workdir: Path, *args: str) -> dict[str, Any]:
    """`gateway ARGS --json` run in this process, in `workdir` with the workers'
    environment: a fresh interpreter per command cost about a second of CPU each, and
    the console script as a process is test_admin_cli's."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, _env(workdir / "gateway.db"), clear=True),
        contextlib.chdir(workdir),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        status = gateway_main([*args, "--json"])
    assert status == 0, err.getvalue()
    payload: dict[str, Any] = json.loads(out.getvalue())
    return payload


async def _burst_then_one_by_one(url: str, token: str, body: dict[str, Any]) -> int:
    """30 concurrent requests on their own connections, then one at a time until refused:
    how many succeeded."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=30, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        burst = await asyncio.gather(
            *(
                client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
                for _ in range(30)
            )
        )
        assert all(r.status_code in (200, 401, 429) for r in burst), [r.text for r in burst]
        successes = sum(r.status_code == 200 for r in burst)
        while True:
            answer = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            if answer.status_code != 200:
                return successes
            successes += 1
            assert successes <= 10, "admitted past the limit"


def test_usage_limit_holds_exactly_across_workers(workdir: Path, supervised: Supervised) -> None:
    key = _cli(workdir, "keys", "create", "--project", "default", "--usage-limit", "0.10")
    body = {
        "model": "mock-model",
        "messages": [{"role": "user", "content": _prompt_costing_a_cent()}],
    }
    successes = asyncio.run(_burst_then_one_by_one(supervised.url, key["token"], body))
    assert successes == 10
    assert Decimal(_cli(workdir, "keys", "show", key["id"])["usage"]) == Decimal("0.10")
    # A worker's /metrics shows its siblings' series as they last published them (once a
    # second), so the count of the last requests may arrive a publication later.
    deadline = time.monotonic() + 10
    served = supervised.requests_by_worker("chat.completions", 200)
    while sum(served.values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
        served = supervised.requests_by_worker("chat.completions", 200)
    assert sum(served.values()) == 10
    # The workers share one listening socket and the kernel picks which of them accepts
    # a connection, so a burst can land on one worker alone. Until both have answered,
    # more requests on fresh connections: a worker that served none of the ten must
    # still refuse, because the limit its sibling spent is shared state.
    refused = _refusals_until_both_workers_answered(supervised, key["token"], body)
    assert {*served, *refused} == {"1", "2"}, (served, refused)
    assert Decimal(_cli(workdir, "keys", "show", key["id"])["usage"]) == Decimal("0.10")
    assert supervised.stop() == 0


def _refusals_until_both_workers_answered(
    supervised: Supervised, token: str, body: dict[str, Any]
) -> dict[str, int]:
    served = supervised.requests_by_worker("chat.completions", 200)
    deadline = time.monotonic() + 30
    while True:
        refused = supervised.requests_by_worker("chat.completions", 401)
        if {*served, *refused} == {"1", "2"} or time.monotonic() > deadline:
            return refused
        for _ in range(10):
            answer = httpx.post(
                f"{supervised.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                timeout=10,
            )
            assert answer.status_code == 401, answer.text
        time.sleep(1.2)
