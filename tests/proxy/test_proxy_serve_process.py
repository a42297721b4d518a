"""`gateway serve` as a process: SIGHUP reloads the policy, a broken policy keeps the
old one serving (logged with file:line:col), and a broken policy at start exits 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from proxy_test_servers import free_port

from proxy.config import default_policy_dir

BIN = Path(sys.executable).parent
OLD = "Unauthorized: No API key provided."
NEW = "Unauthorized: a key is needed."


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(default_policy_dir(), tmp_path / "policies")
    (tmp_path / "gateway.yaml").write_text(
        f"policy_dir: {tmp_path / 'policies'}\nreload_interval: 0\n"
        f"database: sqlite:///{tmp_path / 'gateway.db'}\n"
    )
    return tmp_path


class Served:
    """A running `gateway serve` and every line it has written so far."""

    def __init__(self, url: str, server: subprocess.Popen[str]) -> None:
        self.url = url
        self.server = server
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.server.stdout is not None
        for line in self.server.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=30)
        self._reader.join(10)


@pytest.fixture
def served(workdir: Path) -> Iterator[Served]:
    port = free_port()
    server = subprocess.Popen(
        [
            str(BIN / "gateway"),
            "serve",
            "--config",
            str(workdir / "gateway.yaml"),
            "--port",
            str(port),
        ],
        cwd=workdir,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Served(f"http://127.0.0.1:{port}", server)
    try:
        _until(lambda: _ready(running.url), "the server is ready", server)
        yield running
    finally:
        running.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _until(condition: Callable[[], bool], what: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if server.poll() is not None:
            raise AssertionError(f"gateway serve exited ({server.returncode}) before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not within 60 s: {what}")
        time.sleep(0.05)


def _message(url: str) -> str:
    message: str = httpx.get(f"{url}/v1/models", timeout=5).json()["message"]
    return message


def test_sighup_reloads_and_a_broken_file_keeps_the_old_policy(
    workdir: Path, served: Served
) -> None:
    url, server = served.url, served.server
    assert _message(url).startswith(OLD)
    rego = workdir / "policies" / "gateway.rego"
    rego.write_text(rego.read_text().replace(OLD, NEW))
    server.send_signal(signal.SIGHUP)
    _until(lambda: _message(url).startswith(NEW), "the new policy answers", server)
    (workdir / "policies" / "broken.rego").write_text("package gateway\n\nx := {\n")
    server.send_signal(signal.SIGHUP)
    failed = "policy reload failed, keeping the previous policy"
    _until(lambda: failed in served.output, "the failed reload is logged", server)
    assert _message(url).startswith(NEW)
    assert re.search(r"broken\.rego:\d+:\d+", served.output), served.output


def test_broken_policy_at_start_exits_2(workdir: Path) -> None:
    (workdir / "policies" / "broken.rego").write_text("package gateway\n\nx := {\n")
    result = subprocess.run(
        # Port 0: the kernel's free port, never the default 4000 that something else on
        # the machine may hold (serve binds before loading, so that would exit 2 too).
        [str(BIN / "gateway"), "serve", "--config", str(workdir / "gateway.yaml"), "--port", "0"],
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert re.search(r"broken\.rego:\d+:\d+", result.stderr), result.stderr


def test_a_policy_with_a_misspelt_input_path_at_start_exits_2(workdir: Path) -> None:
    rego = workdir / "policies" / "gateway.rego"
    rego.write_text(rego.read_text().replace("input.request.model", "input.reqest.model", 1))
    result = subprocess.run(
        # Port 0: the kernel's free port, never the default 4000 that something else on
        # the machine may hold (serve binds before loading, so that would exit 2 too).
        [str(BIN / "gateway"), "serve", "--config", str(workdir / "gateway.yaml"), "--port", "0"],
        cwd=workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert re.search(r"gateway\.rego:\d+:\d+: rego_type_error: .*reqest", result.stderr)
    assert "input.schema.json" in result.stderr


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("mysql://x/y", "database `mysql://x/y` is not supported"),
        # Nothing listens on port 1; the password never reaches the message.
        ("postgresql://someone:hunter2@127.0.0.1:1/x", "postgresql://someone:***@127.0.0.1:1/x"),
    ],
)
def test_unusable_database_exits_2_before_serving(
    tmp_path: Path, database: str, expected: str
) -> None:
    result = subprocess.run(
        [str(BIN / "gateway"), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env={**_env(), "GATEWAY_DATABASE": database},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Uvicorn running" not in result.stderr


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    result = subprocess.run(
        [str(BIN / "gateway"), "migrate", "--json"],
        cwd=tmp_path,
        env={**_env(), "GATEWAY_DATABASE": f"sqlite:///{database}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"migrated": True}
    assert database.exists()


def test_start_announces_the_url_and_whether_the_dashboard_is_on(served: Served) -> None:
    _until(lambda: "listening on" in served.output, "the announcement", served.server)
    line = next(line for line in served.lines if "listening on" in line)
    assert f"listening on {served.url} (API {served.url}/v1" in line
    assert "dashboard and admin API off (set GATEWAY_ADMIN_TOKEN to turn them on)" in line
    _until(lambda: "GATEWAY_SECRET_KEY is not set" in served.output, "the warning", served.server)


def test_a_busy_port_exits_2_with_one_clear_line(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = ["serve", "--config", str(workdir / "gateway.yaml"), "--port", str(port)]
        result = subprocess.run(
            [str(BIN / "gateway"), *command],
            cwd=workdir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == (
        f"gateway: error: cannot listen on 127.0.0.1:{port}: the port is already in use; "
        "stop the other server or choose another port with --port (or `port` in the config)\n"
    )
    assert result.stdout == ""
