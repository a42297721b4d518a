"""Where one request's time goes at c=1: the gateway's CPU, Redis's, per request.

    .venv/bin/python -m bench.c1_split [--backend postgres-redis] [--rounds 3]
        [--duration 5] [--before DIR]

At one request at a time (`wrk -t1 -c1`) nothing overlaps: a request's wall time is
the gateway's CPU, the store's servers' CPU for its round trips, the mock's and
`wrk`'s, and the scheduler's wake-ups in between. This runs `gateway serve` (and with
`--before DIR` a gateway on another checkout's code, interleaved round by round) as
`bench.wrk_compare` does, and around every `wrk -c1` run reads:

- the gateway's user and system CPU seconds (/proc), per completed request;
- on PostgreSQL + Redis, Redis's `INFO commandstats`: how many commands of each kind
  one request costs and Redis's own time (`usec`) for them; the scripts' calls
  (`evalsha`) include the commands they run.

Redis is shared with whatever else uses it: its figures are deltas over the run, so
another client's commands show as fractions of a call per request (the table drops
kinds under 0.01 per request). CPU time moves less with other load than wall time,
and command counts not at all.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

from bench.cpu_per_request import cpu_seconds
from bench.gateway_setup import BACKENDS, REDIS_URL, start_gateway, start_mocks
from bench.processes import LOAD_CORE, ProcessGroup, machine_description, pin_current_process
from bench.wrk_compare import parse_wrk, wrk_script
from bench.wrk_cpu import completed_requests

__all__ = ["CommandStat", "command_deltas", "main", "parse_commandstats"]


class CommandStat(msgspec.Struct, frozen=True):
    """One Redis command's totals: calls and server microseconds."""

    calls: int
    usec: int


def parse_commandstats(text: str) -> dict[str, CommandStat]:
    """`INFO commandstats` as {command: totals} (subcommands keep their `|` name)."""
    found = re.findall(r"^cmdstat_([\w|]+):calls=(\d+),usec=(\d+),", text, re.MULTILINE)
    return {name: CommandStat(int(calls), int(usec)) for name, calls, usec in found}


def command_deltas(
    before: dict[str, CommandStat], after: dict[str, CommandStat], requests: int
) -> dict[str, tuple[float, float]]:
    """{command: (calls per request, µs per call)} between two readings, for the
    commands made at least once per 100 requests."""
    out: dict[str, tuple[float, float]] = {}
    for name, stat in after.items():
        old = before.get(name, CommandStat(0, 0))
        calls = stat.calls - old.calls
        if calls * 100 >= requests and calls > 0:
            out[name] = (calls / requests, (stat.usec - old.usec) / calls)
    return out


def _commandstats() -> dict[str, CommandStat]:
    done = subprocess.run(
        ["redis-cli", "-u", REDIS_URL, "info", "commandstats"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return parse_commandstats(done.stdout)


class _Run(msgspec.Struct, frozen=True):
    requests: int
    p50_ms: float
    user_us: float
    system_us: float
    commands: dict[str, tuple[float, float]]


def _run(url: str, script: Path, pid: int, duration: float, redis: bool) -> _Run:
    command = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", "-c1"]
    command += [f"-d{duration:g}s", "--latency", "-s", str(script), url]
    stats = _commandstats() if redis else {}
    user, system = cpu_seconds(pid)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    user_after, system_after = cpu_seconds(pid)
    requests = max(1, completed_requests(done.stdout))
    commands = command_deltas(stats, _commandstats(), requests) if redis else {}
    return _Run(
        requests=requests,
        p50_ms=parse_wrk(done.stdout).p50_ms,
        user_us=(user_after - user) / requests * 1e6,
        system_us=(system_after - system) / requests * 1e6,
        commands=commands,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="where a c=1 request's time goes")
    parser.add_argument("--backend", choices=BACKENDS, default="postgres-redis")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--before", type=Path, help="another checkout's code, interleaved")
    args = parser.parse_args(argv)
    redis = args.backend == "postgres-redis"
    pin_current_process(LOAD_CORE)
    runs: dict[str, list[_Run]] = {}
    with tempfile.TemporaryDirectory(prefix="c1-split-") as tmp, ProcessGroup(Path(tmp)) as group:
        work = Path(tmp)
        instant, paced = start_mocks(group)
        trees = {"this checkout": None} | (
            {} if args.before is None else {str(args.before): args.before}
        )
        targets = {}
        for number, (name, checkout) in enumerate(trees.items()):
            directory = work / f"gateway-{number}"
            directory.mkdir()
            env = None if checkout is None else {"PYTHONPATH": str(checkout.resolve())}
            gateway = start_gateway(group, directory, args.backend, instant, paced, env)
            url = f"{gateway.base_url}/v1/chat/completions"
            targets[name] = (url, wrk_script(work, gateway.token), gateway.pid)
        for url, script, pid in targets.values():  # warm-up
            _run(url, script, pid, 2.0, False)
        for _ in range(args.rounds):
            for name, (url, script, pid) in targets.items():
                runs.setdefault(name, []).append(_run(url, script, pid, args.duration, redis))
    print(f"# {machine_description()}")
    print(f"# wrk -t1 -c1, {args.duration:g} s x {args.rounds} rounds interleaved, medians")
    print("| gateway | requests | wall µs/request | p50 ms | CPU µs/request (user + sys) |")
    print("|---|---:|---:|---:|---:|")
    for name, figures in runs.items():
        requests = statistics.median(r.requests for r in figures)
        user = statistics.median(r.user_us for r in figures)
        system = statistics.median(r.system_us for r in figures)
        print(
            f"| {name} | {requests:,.0f} | {args.duration * 1e6 / requests:,.0f} "
            f"| {statistics.median(r.p50_ms for r in figures):.2f} "
            f"| {user + system:,.0f} ({user:,.0f} + {system:,.0f}) |"
        )
    if redis:
        print("\nRedis commands per request (calls x server µs per call, median of rounds):")
        for name, figures in runs.items():
            kinds = sorted({kind for r in figures for kind in r.commands})
            parts = []
            total = 0.0
            for kind in kinds:
                seen = [r.commands[kind] for r in figures if kind in r.commands]
                calls = statistics.median(c for c, _ in seen)
                usec = statistics.median(u for _, u in seen)
                parts.append(f"{kind} {calls:.2f} x {usec:.1f}")
                total += calls
            evalsha = [
                r.commands["evalsha"][0] * r.commands["evalsha"][1]
                for r in figures
                if "evalsha" in r.commands
            ]
            scripts = f"; scripts {statistics.median(evalsha):.0f} µs/request" if evalsha else ""
            print(f"- {name}: {total:.1f} commands{scripts}: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
