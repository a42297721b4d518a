"""Start, pin, watch and stop the benchmark's child processes.

Every process the harness starts goes through ``ProcessGroup`` so that it is
stopped (SIGTERM, then SIGKILL) when the harness ends, however it ends.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "GATEWAY_CORE",
    "LOAD_CORE",
    "ProcessGroup",
    "free_port",
    "inherited_environment",
    "machine_description",
    "pin_current_process",
    "process_tree",
    "python_module",
    "rss_mib",
    "rss_of",
    "wait_for_port",
]

GATEWAY_CORE = 0
"""The core the server under test runs on."""
LOAD_CORE = 1
"""The core shared by the load generator and the mock upstream."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pin_current_process(core: int) -> None:
    """Pin this process to ``core`` when the machine has it (no-op otherwise)."""
    if core < _cpu_count():
        os.sched_setaffinity(0, {core})


def _pinned(command: Sequence[str], core: int | None) -> list[str]:
    """`command` pinned to `core` (None: free to use every core)."""
    taskset = shutil.which("taskset")
    if taskset is None or core is None or core >= _cpu_count():
        return list(command)
    return [taskset, "-c", str(core), *command]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Block until something accepts on 127.0.0.1:``port``; fail if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout_s} s")


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` and all its descendants, in MiB."""
    return round(sum(rss_of(member) for member in process_tree(pid)), 1)


def rss_of(pid: int) -> float:
    """Resident set size of ``pid`` alone, in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    return [pid, *_descendants(pid)]


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = [int(child) for child in children]
    for child in list(found):
        found.extend(_descendants(child))
    return found


def machine_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load average at start {load}, "
        f"commit {_git_commit()}"
    )


def _git_commit() -> str:
    """The checked-out commit, so a figure can be traced to the code it measured."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def inherited_environment() -> dict[str, str]:
    """This environment minus `GATEWAY_*`, which would override the bench's config."""
    return {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}


class ProcessGroup:
    """Child processes started by the harness; all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        command: Sequence[str],
        core: int | None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` pinned to ``core``; wait for ``port`` when given."""
        log = (self._log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            _pinned(command, core),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**inherited_environment(), **(env or {})},
            start_new_session=True,
        )
        log.close()
        self._children.append((name, process))
        if port is not None:
            try:
                wait_for_port(port, process)
            except RuntimeError as error:
                tail = (self._log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name}: {error}\n--- {name}.log ---\n{tail}") from error
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._children = [child for child in self._children if child[1] is not process]

    def stop_all_named(self, name: str) -> None:
        for child_name, process in list(self._children):
            if child_name == name:
                self.stop(process)

    def stop_all(self) -> None:
        for _, process in reversed(list(self._children)):
            self.stop(process)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()


def python_module(module: str, *args: str) -> list[str]:
    """The command that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
