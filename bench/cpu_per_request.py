"""CPU time the gateway spends per request under load, and whether it drifts.

    python -m bench.cpu_per_request [--backend sqlite|postgres-redis] [--rounds 3] [--seconds 4]

Starts the mocks and a real gateway exactly as `bench.run` does, then runs several
back-to-back rounds of 64 concurrent plain requests and reports, per round, the rate,
the gateway's CPU time (user + system, from /proc) per completed request, and the
size of the SQLite database files. On one saturated core, CPU per request is the
figure that moves least with noise (2,000 req/s needs ≤ 500 µs); rounds that get
slower one after the other, or a WAL that keeps growing, show state building up.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import uvloop

from bench.gateway_setup import BACKENDS, start_gateway, start_mocks
from bench.loadgen import run_load
from bench.processes import LOAD_CORE, ProcessGroup, pin_current_process, process_tree

__all__ = ["cpu_seconds", "main", "tree_cpu_seconds"]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` so far (Linux /proc)."""
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its children so far (members that exit
    while being read are skipped)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            user, system = cpu_seconds(member)
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += user + system
    return total


def _database_files(work_dir: Path) -> str:
    sizes = [
        f"{path.name} {path.stat().st_size / 2**20:.1f} MiB"
        for path in sorted(work_dir.rglob("*.db*"))
        if path.is_file()
    ]
    return ", ".join(sizes) or "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gateway CPU time per request under load")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    pin_current_process(LOAD_CORE)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ProcessGroup(Path(tmp)) as group:
        urls = start_mocks(group)
        gateway = start_gateway(group, Path(tmp), args.backend, urls[0], urls[1])
        endpoint = gateway.plain_chat()
        uvloop.run(run_load(endpoint, args.concurrency, 1.5))  # warm-up
        print(f"backend {args.backend}, {args.concurrency} concurrent, gateway pid {gateway.pid}")
        for round_number in range(1, args.rounds + 1):
            user0, system0 = cpu_seconds(gateway.pid)
            started = time.monotonic()
            load = uvloop.run(run_load(endpoint, args.concurrency, args.seconds))
            wall = time.monotonic() - started
            user1, system1 = cpu_seconds(gateway.pid)
            cpu = (user1 - user0) + (system1 - system0)
            # Requests the gateway served in that wall time (the rate is over the window).
            served = max(1.0, load.rate_per_s * wall)
            print(
                f"round {round_number}: {load.rate_per_s:,.0f} req/s, "
                f"p99 {load.latency_p99_ms:.1f} ms, "
                f"CPU {cpu / wall:.0%} of a core ({(system1 - system0) / wall:.0%} system), "
                f"{cpu / served * 1e6:,.0f} µs CPU/request, errors {load.errors}; "
                f"files: {_database_files(Path(tmp))}"
            )


if __name__ == "__main__":
    main()
