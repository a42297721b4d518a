"""Redis's own instructions per request for the ledger's request path (ADMIT + SETTLE).

    .venv/bin/python -m bench.redis_script_instructions [--before DIR] [--requests 1000]
        [--keys plain,controls]

Starts a private `redis-server` under `valgrind --tool=callgrind` on a free port and
runs `bench/store_request_cpu.py` (PostgreSQL at `bench.gateway_setup.POSTGRES_URL`, in
a schema of its own) against it at one request at a time, with N and then 2N requests;
callgrind's counters are zeroed before and dumped after each run, so the difference
over N is what Redis executes for one request: reading the two calls, running the two
scripts and their commands, writing the replies. With `--before DIR` the same is done
with another checkout's code (its scripts and its arguments). Unlike Redis's
`commandstats` microseconds, the count does not move with the machine's load; it still
varies by a few percent from run to run (Redis's timers and the ledger's flushes run
by the clock, and Redis under callgrind is slow), so compare runs made together.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.processes import free_port

__all__ = ["main", "total_instructions"]

_ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import sys
import bench.gateway_setup as setup
setup.REDIS_URL = sys.argv[1]
import bench.store_request_cpu as bench
sys.argv = ["store_request_cpu", sys.argv[2], "1", "postgres-redis", sys.argv[3]]
bench.main()
"""


def total_instructions(text: str) -> int:
    """The event total of a callgrind output file (its `summary:` or `totals:` line)."""
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise ValueError("no totals in the callgrind output")
    return int(found.group(1))


class _Server:
    """A redis-server under callgrind, counted between `zero` and `dump`."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self._out = work / "redis.callgrind"
        self._work = work
        self._process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={self._out}",
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server under callgrind did not start")
            time.sleep(0.2)

    def _control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self._process.pid)], capture_output=True, check=True
        )

    def zero(self) -> None:
        self._control("-z")

    def dump(self) -> int:
        """Instructions since the last `zero`."""
        for old in self._work.glob("redis.callgrind.*"):
            old.unlink()
        self._control("-d")
        dumps = sorted(self._work.glob("redis.callgrind.*"), key=lambda p: p.stat().st_mtime)
        return total_instructions(dumps[-1].read_text())

    def close(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _counted(server: _Server, checkout: Path | None, requests: int, key: str) -> int:
    env = dict(os.environ)
    tree = (checkout or _ROOT).resolve()
    env["PYTHONPATH"] = str(tree)
    url = f"redis://127.0.0.1:{server.port}/0"
    server.zero()
    # Run in the tree measured: `python -c` puts its working directory first on the path,
    # ahead of PYTHONPATH (run from this checkout, `--before` measured this code twice).
    subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(requests), key],
        check=True,
        capture_output=True,
        env=env,
        cwd=tree,
    )
    return server.dump()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redis instructions per ledger request")
    parser.add_argument("--before", type=Path, help="another checkout's code, compared")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keys", default="plain,controls")
    args = parser.parse_args(argv)
    trees: dict[str, Path | None] = {"this checkout": None}
    if args.before is not None:
        trees[str(args.before)] = args.before
    n = args.requests
    print(f"# redis-server under callgrind; {n} and {2 * n} requests at C=1, difference / {n}")
    print("| code | key | instructions per request (admit + settle) |")
    print("|---|---|---:|")
    with tempfile.TemporaryDirectory(prefix="redis-instructions-") as tmp:
        server = _Server(Path(tmp))
        try:
            for key in args.keys.split(","):
                for name, checkout in trees.items():
                    small = _counted(server, checkout, n, key)
                    large = _counted(server, checkout, 2 * n, key)
                    print(f"| {name} | {key} | {(large - small) / n:,.0f} |", flush=True)
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
