"""RSS of each gateway worker through a soak under `wrk` (issue 15: <= 100 MB per worker
after a 2-minute soak).

    .venv/bin/python -m bench.wrk_soak [--short] [--seconds 120] [--backend sqlite]
        [--workers N] [--connections 64]

Starts the mocks and a real `gateway serve` as `bench.wrk_compare` does (pinned to the
gateway core with one worker; free on every core with several), warms it up, then runs
`wrk -c64` for `--seconds` (120; `--short`: 20) while sampling the resident set size of
every process of the gateway each second. Prints, per process, RSS idle before the
soak, its peak during it and settled after it, and the verdict against 100 MB; a
process tree is reported process by process, so the supervisor of `--workers N` is not
mistaken for a worker.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from bench.gateway_setup import BACKENDS, start_gateway, start_mocks
from bench.processes import ProcessGroup, machine_description, process_tree, rss_of
from bench.wrk_compare import wrk, wrk_script

__all__ = ["ProcessMemory", "main", "memory_rows"]

LIMIT_MIB = 100.0
_SAMPLE_S = 1.0


class ProcessMemory(msgspec.Struct, frozen=True):
    """RSS of one process of the gateway, MiB."""

    pid: int
    role: str
    idle: float
    peak: float
    settled: float


def memory_rows(memory: list[ProcessMemory]) -> list[str]:
    """The report's table rows with the verdict per worker (the supervisor has none)."""
    rows = [
        "| process | idle MiB | peak MiB | after MiB | <= 100 MB after |",
        "|---|---:|---:|---:|---|",
    ]
    for process in memory:
        verdict = (
            "—"
            if process.role == "supervisor"
            else ("yes" if process.settled <= LIMIT_MIB else "**no**")
        )
        rows.append(
            f"| {process.role} (pid {process.pid}) | {process.idle:.1f} | {process.peak:.1f} "
            f"| {process.settled:.1f} | {verdict} |"
        )
    return rows


def _roles(pid: int) -> dict[int, str]:
    """The gateway's processes: itself alone, or a supervisor and its workers."""
    children = process_tree(pid)[1:]
    if not children:
        return {pid: "worker"}
    return {pid: "supervisor", **{child: f"worker {n}" for n, child in enumerate(children, 1)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--short", action="store_true", help="a 20 s soak")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    if args.short:
        args.seconds = 20.0
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wrk-soak-") as tmp, ProcessGroup(Path(tmp)) as group:
        work = Path(tmp)
        instant, paced = start_mocks(group)
        gateway = start_gateway(group, work, args.backend, instant, paced, workers=args.workers)
        url = f"{gateway.base_url}/v1/chat/completions"
        script = wrk_script(work, gateway.token)
        wrk(url, script, 8, 3)  # warm-up: caches, pools, first allocations
        time.sleep(1.0)
        roles = _roles(gateway.pid)
        idle = {pid: rss_of(pid) for pid in roles}
        peak = dict(idle)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(_SAMPLE_S):
                for pid in roles:
                    peak[pid] = max(peak[pid], rss_of(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            load = wrk(url, script, args.connections, args.seconds)
        finally:
            stop.set()
            sampler.join()
        time.sleep(1.0)  # let in-flight work and buffers drain
        settled = {pid: rss_of(pid) for pid in roles}
    memory = [
        ProcessMemory(pid, role, idle[pid], peak[pid], settled[pid]) for pid, role in roles.items()
    ]
    print(f"# {machine_description()}")
    print(
        f"# soak: wrk -t1 -c{args.connections} {args.seconds:g} s against gateway, "
        f"{args.backend}, {args.workers} worker(s): {load.requests_per_s:,.0f} req/s, "
        f"p99 {load.p99_ms:.1f} ms, {load.errors} errors; RSS sampled every {_SAMPLE_S:g} s"
    )
    print("\n".join(memory_rows(memory)))
    workers = [m for m in memory if m.role != "supervisor"]
    return 0 if all(m.settled <= LIMIT_MIB for m in workers) and load.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
