"""System calls per request of `gateway serve` under `wrk`: what a request costs the kernel.

    .venv/bin/python -m bench.request_syscalls [--connections 1] [--duration 4]
        [--backend sqlite|postgres-redis] [--before DIR]

Starts the mocks and a gateway as `bench.wrk_cpu` does (`--before DIR`: another
checkout's code instead, its `proxy` first on PYTHONPATH), warms it with one `wrk`
run, then counts the gateway's system calls (`strace -c -f`, every thread) during a
second `wrk -t1 -c<connections>` run and prints each call's count divided by the
requests `wrk` completed. The counts hardly depend on the machine's load (unlike
their time, which `strace` inflates anyway): at one connection each request is
committed on its own, so the store's WAL writes (`pwrite64`, two per page a commit
changes) and locks (`fcntl`) show whole; the reply's writes show as `write`/`writev`.
Needs `strace` and `wrk`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench.gateway_setup import BACKENDS, start_gateway, start_mocks
from bench.processes import ProcessGroup
from bench.wrk_compare import wrk_script

__all__ = ["main", "per_request"]

_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def per_request(strace_summary: str, requests: int) -> list[tuple[str, float]]:
    """(system call, calls per request), most first, from `strace -c`'s table."""
    counts: list[tuple[str, float]] = []
    for line in strace_summary.splitlines():
        match = _ROW.match(line)
        if match is not None and match.group(2) != "total":
            counts.append((match.group(2), int(match.group(1)) / requests))
    return sorted(counts, key=lambda item: -item[1])


def _wrk(url: str, script: Path, connections: int, duration: float) -> int:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(script), url]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    found = re.search(r"(\d+) requests in", done.stdout)
    if found is None:
        raise SystemExit(f"wrk printed no request count: {done.stdout[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="system calls per gateway request")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--before", type=Path, help="another checkout's code")
    args = parser.parse_args(argv)
    extra = None if args.before is None else {"PYTHONPATH": str(args.before.resolve())}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ProcessGroup(Path(tmp)) as group:
        urls = start_mocks(group)
        gateway = start_gateway(group, Path(tmp), args.backend, urls[0], urls[1], extra)
        url = f"{gateway.base_url}/v1/chat/completions"
        script = wrk_script(Path(tmp), gateway.token)
        _wrk(url, script, args.connections, 2.0)
        summary = Path(tmp) / "strace.txt"
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(gateway.pid), "-o", str(summary)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached to every thread before the load starts
        requests = _wrk(url, script, args.connections, args.duration)
        tracer.terminate()
        tracer.wait(timeout=30)
        rows = per_request(summary.read_text(), requests)
    where = "this checkout" if args.before is None else str(args.before)
    print(f"{where}, {args.backend}, wrk -c{args.connections}: {requests} requests")
    for name, count in rows:
        if count >= 0.05:
            print(f"{count:8.2f}  {name}")


if __name__ == "__main__":
    main()
