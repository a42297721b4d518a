"""The gateway against its floors under an external load generator (`wrk`), one run.

Issue 15's harness: the Python load generator of `bench.run` shares the interpreter's
costs and missed the SQLite checkpoint stall that `wrk` shows, so this runs
Debian's `wrk` (`apt-get install wrk`) against, in one interleaved run:

- the instant mock called directly (the ceiling of the load core),
- the Litestar + aiohttp pass-through (`bench.passthrough_proxy`, no key, no
  policy, no ledger: the floor of a proxy on this stack),
- `gateway serve` with the SQLite ledger (and PostgreSQL + Redis with
  `--backend postgres-redis` or `all`),

each server pinned to core 0 and `wrk` plus the mock to core 1, as `bench.run`
does. Per round and target: `wrk -c1` (latency; p50/p99 from `--latency`) then
`wrk -c64` (throughput), rounds interleaved so that every target sees the same
background load; the table shows the median over rounds, then the ratios the
issue's targets are written in (added p50 at c=1 over the mock, c=64 throughput as
a share of the pass-through floor).

    .venv/bin/python -m bench.wrk_compare [--duration 10] [--rounds 3] [--backend sqlite]
        [--before DIR]

`--before DIR` adds a SQLite gateway running the code of another checkout (e.g.
`git worktree add /tmp/before <commit>`; its `proxy` is imported through PYTHONPATH)
to the same interleaved run: before/after figures that saw the same load.
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

import msgspec

from bench.gateway_setup import BACKENDS, INSTANT_MODEL, start_gateway, start_mocks
from bench.loadgen import chat_body
from bench.processes import (
    GATEWAY_CORE,
    LOAD_CORE,
    ProcessGroup,
    free_port,
    machine_description,
    python_module,
)

__all__ = ["WrkFigures", "main", "parse_wrk"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


class WrkFigures(msgspec.Struct, frozen=True):
    """One `wrk` run: requests/s, latency percentiles in ms, failed answers."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkFigures:
    """The figures of `wrk --latency` output."""
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", output, re.MULTILINE))
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None or "50" not in percentiles or "99" not in percentiles:
        raise ValueError(f"wrk printed no figures:\n{output}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket is not None:
        errors += sum(int(n) for n in socket.groups())
    return WrkFigures(float(rate[1]), _ms(percentiles["50"]), _ms(percentiles["99"]), errors)


def _script(directory: Path, token: str | None) -> Path:
    """A wrk Lua script sending the benchmark's plain chat request."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {msgspec.json.encode(chat_body(False, INSTANT_MODEL).decode()).decode()}",
    ]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    path = directory / f"request-{len(list(directory.glob('request-*')))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wrk(url: str, script: Path, connections: int, duration: float) -> WrkFigures:
    command = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}"]
    command += [f"-d{duration:g}s", "--latency", "-s", str(script), url]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    return parse_wrk(done.stdout)


def _start_passthrough(group: ProcessGroup, instant: str) -> str:
    port = free_port()
    command = python_module(
        "uvicorn",
        "bench.passthrough_proxy:app_from_env",
        "--factory",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--port",
        str(port),
    )
    env = {"BENCH_UPSTREAM_CLIENT": "aiohttp", "BENCH_UPSTREAM_URL": instant}
    group.start("passthrough", command, GATEWAY_CORE, env=env, port=port)
    return f"http://127.0.0.1:{port}"


def _start_before(
    group: ProcessGroup, work: Path, checkout: Path, instant: str, paced: str
) -> tuple[str, Path]:
    """A SQLite gateway importing `proxy` from `checkout` (PYTHONPATH comes first)."""
    directory = work / "before"
    directory.mkdir()
    pythonpath = {"PYTHONPATH": str(checkout.resolve())}
    gateway = start_gateway(group, directory, "sqlite", instant, paced, pythonpath)
    return f"{gateway.base_url}/v1/chat/completions", _script(work, gateway.token)


def _median(figures: list[WrkFigures]) -> WrkFigures:
    return WrkFigures(
        statistics.median(f.requests_per_s for f in figures),
        statistics.median(f.p50_ms for f in figures),
        statistics.median(f.p99_ms for f in figures),
        sum(f.errors for f in figures),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="sqlite")
    parser.add_argument("--before", type=Path, help="a checkout whose gateway runs too (SQLite)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also a SQLite gateway with this many workers, free on every core (scaling)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    with (
        tempfile.TemporaryDirectory(prefix="wrk-compare-") as tmp,
        ProcessGroup(Path(tmp)) as group,
    ):
        work = Path(tmp)
        instant, paced = start_mocks(group)
        targets: dict[str, tuple[str, Path]] = {
            "mock called directly": (f"{instant}/chat/completions", _script(work, None)),
            "Litestar + aiohttp pass-through (floor)": (
                f"{_start_passthrough(group, instant)}/v1/chat/completions",
                _script(work, None),
            ),
        }
        for backend in backends:
            backend_dir = work / backend
            backend_dir.mkdir()
            gateway = start_gateway(group, backend_dir, backend, instant, paced)
            targets[f"gateway, {backend}"] = (
                f"{gateway.base_url}/v1/chat/completions",
                _script(work, gateway.token),
            )
        if args.workers > 1:
            directory = work / f"workers-{args.workers}"
            directory.mkdir()
            gateway = start_gateway(
                group, directory, "sqlite", instant, paced, workers=args.workers
            )
            targets[f"gateway, sqlite, {args.workers} workers on every core"] = (
                f"{gateway.base_url}/v1/chat/completions",
                _script(work, gateway.token),
            )
        if args.before is not None:
            targets[f"gateway, sqlite, code of {args.before}"] = _start_before(
                group, work, args.before, instant, paced
            )
        for url, script in targets.values():  # warm-up: first requests, caches, JIT-free paths
            _wrk(url, script, 8, 2)
        runs: dict[str, dict[int, list[WrkFigures]]] = {name: {1: [], 64: []} for name in targets}
        for _ in range(args.rounds):
            for connections in (1, 64):
                for name, (url, script) in targets.items():
                    runs[name][connections].append(_wrk(url, script, connections, args.duration))
    print(f"# {machine_description()}")
    print(f"# wrk -t1, {args.duration:g} s x {args.rounds} rounds interleaved, medians")
    print("| target | c=1 p50 ms | c=1 p99 ms | c=64 req/s | c=64 p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    medians = {name: (_median(r[1]), _median(r[64])) for name, r in runs.items()}
    for name, (one, many) in medians.items():
        errors = one.errors + many.errors
        print(
            f"| {name} | {one.p50_ms:.2f} | {one.p99_ms:.2f} | {many.requests_per_s:,.0f} "
            f"| {many.p99_ms:.1f} | {errors} |"
        )
    mock = medians["mock called directly"][0]
    floor = medians["Litestar + aiohttp pass-through (floor)"][1]
    for backend in backends:
        one, many = medians[f"gateway, {backend}"]
        print(
            f"{backend}: added p50 at c=1 {one.p50_ms - mock.p50_ms:.2f} ms (target <= 0.6), "
            f"p99 {one.p99_ms:.2f} ms (target <= 3), c=64 "
            f"{many.requests_per_s / floor.requests_per_s:.0%} of the floor (target >= 75%)"
        )
    for name, per in runs.items():  # every round, for the record
        rounds = "; ".join(
            f"c={c}: "
            + ", ".join(
                f"{f.requests_per_s:,.0f}/s p50 {f.p50_ms:.2f} p99 {f.p99_ms:.2f}" for f in figures
            )
            for c, figures in per.items()
        )
        print(f"# {name}: {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
