"""One worker process of `gateway serve --workers N` (started by `proxy.workers`).

It reads the configuration the supervisor validated (JSON on stdin, so secrets never
appear on a command line), takes the listening socket the supervisor bound (an
inherited file descriptor), and serves the app on it like `gateway serve` does, with
its own policy watcher, SIGHUP reload and store connections. Not a user command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Sequence

import msgspec

from proxy.config import GatewayConfig

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proxy.worker")
    parser.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    parser.add_argument("--index", required=True, help="this worker's number, 1..N")
    parser.add_argument("--metrics-dir", required=True, help="where the workers share metrics")
    return parser


async def _exit_with_supervisor(supervisor: int) -> None:
    """Stop (as on SIGTERM) when the supervisor is gone, e.g. killed with SIGKILL: an
    orphaned worker would hold the port and the database."""
    while os.getppid() == supervisor:
        await asyncio.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Until the app's own handler is in place (lifespan), a SIGHUP from the supervisor
    # must not end the process; the policy is loaded fresh at start anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = msgspec.json.decode(sys.stdin.buffer.read(), type=GatewayConfig)
    from proxy.cli import configure_logging

    configure_logging(config.log_level)
    from proxy import server
    from proxy.app import create_app
    from proxy.gc_tuning import tune_for_serving
    from proxy.worker_metrics import WorkerShare

    sock = socket.socket(fileno=args.fd)
    share = WorkerShare(directory=args.metrics_dir, worker=args.index)
    app = create_app(config, worker_share=share)
    supervisor = os.getppid()
    watchers: set[asyncio.Task[None]] = set()

    def watch_supervisor() -> None:
        watchers.add(asyncio.get_running_loop().create_task(_exit_with_supervisor(supervisor)))

    app.on_startup.append(watch_supervisor)

    tune_for_serving()
    server.serve(app, config, sock, announce=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
