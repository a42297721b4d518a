"""CPU time per request under `wrk -c64`: the gateway against the Litestar floor.

    .venv/bin/python -m bench.wrk_cpu [--rounds 5] [--duration 5] [--before DIR]
        [--backend sqlite|postgres-redis]

On one saturated core a server's throughput is the inverse of its CPU time per
request, and that figure moves far less with other load on the machine than req/s
does (a busy neighbour takes wall time from the pinned core, not CPU time from the
request). So this reads each server's user + system CPU seconds from /proc around
every `wrk -t1 -c64` run and divides by the requests `wrk` completed. Targets
alternate round by round, as in `bench.wrk_compare`; the table shows medians, and
`floor / gateway` is the c=64 throughput share the gateway would have on a quiet
core (issue 15's target: at least 75% of the Litestar + aiohttp floor).

`--before DIR` (repeatable) adds a gateway running another checkout's code (its
`proxy` first on PYTHONPATH) on the same backend, for a before/after that saw the same
load (on PostgreSQL + Redis the gateways share the database and the ledger, as
instances of one deployment do).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cpu_per_request import tree_cpu_seconds
from bench.gateway_setup import BACKENDS, start_gateway, start_mocks
from bench.processes import (
    LOAD_CORE,
    ProcessGroup,
    machine_description,
    pin_current_process,
)
from bench.wrk_compare import start_floor_process, wrk_script
from bench.wrk_ratios import LITESTAR_FLOOR

__all__ = ["completed_requests", "main"]

_CONNECTIONS = 64


def completed_requests(output: str) -> int:
    """The requests `wrk` completed (its `N requests in T` line), failed ones included."""
    match = re.search(r"^\s*(\d+) requests in ", output, re.MULTILINE)
    if match is None:
        raise ValueError(f"wrk printed no request count:\n{output}")
    return int(match[1])


def _run(url: str, script: Path, pid: int, duration: float) -> tuple[float, float]:
    """(µs of server CPU per request, req/s) for one `wrk -c64` run."""
    command = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{_CONNECTIONS}"]
    command += [f"-d{duration:g}s", "-s", str(script), url]
    before = tree_cpu_seconds(pid)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    spent = tree_cpu_seconds(pid) - before
    requests = max(1, completed_requests(done.stdout))
    return spent / requests * 1e6, requests / duration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="server CPU time per request at c=64")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument(
        "--before",
        type=Path,
        action="append",
        default=[],
        help="a checkout whose gateway runs too (repeatable)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    pin_current_process(LOAD_CORE)
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="wrk-cpu-") as tmp, ProcessGroup(Path(tmp)) as group:
        work = Path(tmp)
        instant, paced = start_mocks(group)
        floor_url, floor_pid = start_floor_process(group, LITESTAR_FLOOR, instant)
        targets: dict[str, tuple[str, Path, int]] = {
            LITESTAR_FLOOR: (floor_url, wrk_script(work, None), floor_pid),
        }
        gateway = start_gateway(group, work, args.backend, instant, paced)
        url = f"{gateway.base_url}/v1/chat/completions"
        targets[f"gateway, {args.backend}"] = (url, wrk_script(work, gateway.token), gateway.pid)
        for number, checkout in enumerate(args.before):
            directory = work / f"before-{number}"
            directory.mkdir()
            env = {"PYTHONPATH": str(checkout.resolve())}
            before = start_gateway(group, directory, args.backend, instant, paced, env)
            url = f"{before.base_url}/v1/chat/completions"
            name = f"gateway, {args.backend}, code of {checkout}"
            targets[name] = (url, wrk_script(work, before.token), before.pid)
        for url, script, pid in targets.values():  # warm-up
            _run(url, script, pid, 2.0)
        for _ in range(args.rounds):
            for name, (url, script, pid) in targets.items():
                runs.setdefault(name, []).append(_run(url, script, pid, args.duration))
    print(f"# {machine_description()}")
    print(f"# wrk -t1 -c{_CONNECTIONS}, {args.duration:g} s x {args.rounds} rounds alternating")
    print("| target | CPU µs/request (median) | (lowest) | req/s (median) | floor / target CPU |")
    print("|---|---:|---:|---:|---:|")
    floor_cpu = statistics.median(cpu for cpu, _ in runs[LITESTAR_FLOOR])
    for name, figures in runs.items():
        cpu = statistics.median(c for c, _ in figures)
        rate = statistics.median(r for _, r in figures)
        lowest = min(c for c, _ in figures)
        print(f"| {name} | {cpu:,.0f} | {lowest:,.0f} | {rate:,.0f} | {floor_cpu / cpu:.1%} |")
    for name, figures in runs.items():
        print(f"# {name}: " + ", ".join(f"{c:,.0f} µs ({r:,.0f}/s)" for c, r in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
