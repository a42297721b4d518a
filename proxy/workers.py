"""`gateway serve --workers N`: N processes serving one port, and their supervisor.

The supervisor binds the port once (so a port in use is still one clear error before
anything starts) and hands the listening socket to every worker as an inherited file
descriptor; the kernel gives each new connection to whichever worker accepts it first.
Chosen over SO_REUSEPORT, where each worker binds its own socket: a shared socket
keeps `--port 0` meaningful, lets no other process join the port, and loses no
connection when a worker exits (with SO_REUSEPORT the connections waiting in the exited
worker's own queue are reset). What SO_REUSEPORT would give, an even spread of
connections across workers, matters little for a gateway whose clients reconnect and
whose workers are all idle-waiting on I/O.

Each worker is `python -m proxy.worker`: a fresh interpreter (no state forked from the
supervisor, whose own event loop ran the store check) with its own policy watcher,
store connections and upstream pool. The stores are already safe across processes
(SQLite in WAL mode with `BEGIN IMMEDIATE` writes; PostgreSQL and Redis as for two
gateways), so usage stays exact across workers.

Signals: SIGTERM or SIGINT stops the workers gracefully (SIGTERM to each; uvicorn
finishes the requests in flight), a second one kills them; SIGHUP is passed on, so
every worker reloads its policy. A worker that exits on its own is reported with its
status and started again, unless it exited before it had ever started serving (it
cannot start: the store is gone, say), which stops the whole server with status 1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import msgspec

from proxy.config import GatewayConfig
from proxy.worker_metrics import WorkerShare

__all__ = ["parse_workers", "supervise"]

logger = logging.getLogger("gateway")

_STOP_GRACE = 30.0  # seconds the workers have to finish their requests on SIGTERM
_POLL = 0.1


def parse_workers(text: str) -> int:
    """`--workers`: a positive number, or `auto` for the cores this process may use."""
    if text == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--workers {text}: give a number of processes (1, 2, ...) or `auto`")
    return count


class _Worker:
    """One worker process, and whether it has started serving."""

    def __init__(self, index: int, process: subprocess.Popen[bytes], share: WorkerShare) -> None:
        self.index = index
        self.process = process
        self.share = share
        self.started = time.monotonic()
        self.serving = False

    def check_serving(self) -> bool:
        # A worker publishes its metrics file first thing once its lifespan has run.
        self.serving = self.serving or self.share.path.exists()
        return self.serving


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


class _Supervisor:
    def __init__(self, config: GatewayConfig, sock: socket.socket, metrics_dir: str) -> None:
        self._config_json = msgspec.json.encode(config)
        self._sock = sock
        self._metrics_dir = metrics_dir
        self._workers: dict[int, _Worker] = {}
        self._stop_requested = 0  # how many SIGTERM/SIGINT arrived
        self._reload_requested = False

    def start(self, index: int) -> None:
        share = WorkerShare(directory=self._metrics_dir, worker=str(index))
        share.path.unlink(missing_ok=True)  # the previous process's, if restarted
        fd = self._sock.fileno()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "proxy.worker",
                "--fd",
                str(fd),
                "--index",
                str(index),
                "--metrics-dir",
                self._metrics_dir,
            ],
            stdin=subprocess.PIPE,
            pass_fds=(fd,),
        )
        assert process.stdin is not None
        process.stdin.write(self._config_json)
        process.stdin.close()
        self._workers[index] = _Worker(index, process, share)
        logger.info("worker %d started (pid %d)", index, process.pid)

    def on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested += 1

    def on_sighup(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested = True

    def _signal_all(self, signum: int) -> None:
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    def run(self) -> int:
        """Watch the workers until a stop signal or a start-up failure; the exit status."""
        while not self._stop_requested:
            if self._reload_requested:
                self._reload_requested = False
                logger.info("SIGHUP: every worker reloads its policy")
                self._signal_all(signal.SIGHUP)
            for worker in list(self._workers.values()):
                status = worker.process.poll()
                if status is None:
                    worker.check_serving()
                    continue
                if not worker.check_serving():
                    logger.error(
                        "worker %d (pid %d) %s %.1f s after starting, before serving; "
                        "stopping the server (its log above says why)",
                        worker.index,
                        worker.process.pid,
                        _describe(status),
                        time.monotonic() - worker.started,
                    )
                    self._stop()
                    return 1
                logger.error(
                    "worker %d (pid %d) %s; starting it again",
                    worker.index,
                    worker.process.pid,
                    _describe(status),
                )
                self.start(worker.index)
            time.sleep(_POLL)
        self._stop()
        return 0

    def _stop(self) -> None:
        """SIGTERM to every worker, then wait; SIGKILL after `_STOP_GRACE` seconds or on a
        second stop signal."""
        self._signal_all(signal.SIGTERM)
        asked = self._stop_requested
        deadline = time.monotonic() + _STOP_GRACE
        while any(w.process.poll() is None for w in self._workers.values()):
            if time.monotonic() > deadline or self._stop_requested > asked:
                logger.warning("killing the workers that have not stopped")
                self._signal_all(signal.SIGKILL)
                for worker in self._workers.values():
                    worker.process.wait()
                break
            time.sleep(_POLL)
        for worker in self._workers.values():
            status = worker.process.wait()
            if status not in (0, -signal.SIGTERM):
                logger.warning(
                    "worker %d (pid %d) %s while stopping",
                    worker.index,
                    worker.process.pid,
                    _describe(status),
                )


def supervise(config: GatewayConfig, sock: socket.socket, count: int) -> int:
    """Run `count` workers on `sock` until SIGTERM/SIGINT; the exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    supervisor = _Supervisor(config, sock, metrics_dir)
    previous = {
        signum: signal.signal(signum, handler)
        for signum, handler in (
            (signal.SIGTERM, supervisor.on_stop_signal),
            (signal.SIGINT, supervisor.on_stop_signal),
            (signal.SIGHUP, supervisor.on_sighup),
        )
    }
    try:
        for index in range(1, count + 1):
            supervisor.start(index)
        return supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for path in Path(metrics_dir).iterdir():
            path.unlink(missing_ok=True)
        Path(metrics_dir).rmdir()
