"""`workers` in the config file (issue 15): `gateway serve` runs that many processes unless
`--workers` says otherwise; `auto` is one per core; a bad value is refused with where it
came from."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from proxy_test_servers import free_port

from proxy.config import ConfigError, load_config

pytestmark = [pytest.mark.timeout(120)]


def test_the_field_takes_a_number_or_auto_from_the_file_or_the_environment(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("workers: auto\n")
    assert load_config(str(config), environ={}).workers == "auto"
    assert load_config(str(config), environ={"GATEWAY_WORKERS": "3"}).workers == 3
    assert load_config(None, environ={}).workers == 1
    config.write_text("workers: 0\n")
    with pytest.raises(ConfigError, match=r"gateway\.yaml: field `workers`"):
        load_config(str(config), environ={})


class _Serve:
    """`gateway serve` on a fresh port, its output collected as it comes."""

    def __init__(self, workdir: Path, *flags: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "proxy.cli", "serve", "--config", "gateway.yaml"]
        self.process = subprocess.Popen(
            [*command, "--port", port, *flags],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def ready(self) -> str:
        """The output once /readyz answers 200 (every worker started, with several)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "".join(self.lines)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return "".join(self.lines)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("not ready within 90 s:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _started_workers(serve: _Serve) -> int:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        started = sum("worker" in line and "started" in line for line in serve.lines)
        if started >= 2:
            return started
        time.sleep(0.1)
    return 0


def test_serve_runs_the_configured_workers_and_the_flag_overrides_them(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text("workers: 2\ndatabase: sqlite:///./gateway.db\n")
    configured = _Serve(tmp_path)
    try:
        output = configured.ready()
        assert "; 2 workers" in output
        assert _started_workers(configured) == 2
    finally:
        configured.stop()
    overridden = _Serve(tmp_path, "--workers", "1")
    try:
        output = overridden.ready()
        assert " workers" not in output  # one process: no supervisor, no workers line
    finally:
        overridden.stop()
