"""The gateway against its floors under an external load generator (`wrk`), one run.

Issue 15's harness: the Python load generator of `bench.run` shares the interpreter's
costs and missed the SQLite checkpoint stall that `wrk` shows, so this runs
Debian's `wrk` (`apt-get install wrk`) against, in one interleaved run:

- the instant mock called directly (the ceiling of the load core),
- the Litestar + aiohttp pass-through (`bench.passthrough_proxy`, no key, no
  policy, no ledger: the floor of a proxy on this stack),
- the raw-ASGI + aiohttp pass-through (`bench.raw_asgi_proxy`: the same without a
  framework, the floor of any proxy on uvicorn + aiohttp),
- `gateway serve` with the SQLite ledger (and PostgreSQL + Redis with
  `--backend postgres-redis` or `all`),

each server pinned to core 0 and `wrk` plus the mock to core 1, as `bench.run`
does. Per round and target: `wrk -c1` (latency; p50/p99 from `--latency`), then
`wrk -c64` (throughput), then 100 concurrent paced streams (`bench.loadgen`, which
times the first byte; `wrk` cannot), rounds interleaved so that every target sees
the same background load; the table shows the median over rounds, then the ratios
issue 15's targets are written in: added p50/p99 at c=1 over the mock, c=64
throughput as a share of both floors, streams/s and TTFT p99 against the Litestar
floor's.

    .venv/bin/python -m bench.wrk_compare [--short] [--duration 10] [--rounds 3]
        [--backend sqlite] [--before DIR] [--workers N] [--no-streams]

`--short` is 3 s x 1 round (a smoke run, not a figure).

`--before DIR` adds a gateway running the code of another checkout (e.g.
`git worktree add /tmp/before <commit>`; its `proxy` is imported through PYTHONPATH)
to the same interleaved run, on `--backend` (SQLite with `all`): before/after figures
that saw the same load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import uvloop

from bench.gateway_setup import (
    BACKENDS,
    INSTANT_MODEL,
    PACED_MODEL,
    RunningGateway,
    start_gateway,
    start_mocks,
)
from bench.loadgen import Endpoint, chat_body, run_load
from bench.processes import (
    GATEWAY_CORE,
    LOAD_CORE,
    ProcessGroup,
    free_port,
    machine_description,
    pin_current_process,
    python_module,
)
from bench.wrk_ratios import (
    LITESTAR_FLOOR,
    MOCK,
    RAW_FLOOR,
    StreamFigures,
    TargetFigures,
    WrkFigures,
    median_streams,
    median_wrk,
    ratio_line,
)

__all__ = [
    "Target",
    "WrkFigures",
    "main",
    "parse_wrk",
    "start_floor",
    "start_floor_process",
    "wrk",
    "wrk_script",
]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_STREAMS = 100  # concurrent paced streams, as in bench.run and the table
_FLOOR_APPS = {
    LITESTAR_FLOOR: "bench.passthrough_proxy:app_from_env",
    RAW_FLOOR: "bench.raw_asgi_proxy:app_from_env",
}


class Target(msgspec.Struct, frozen=True):
    """Where `wrk` sends plain requests (with its Lua script), and where paced streams go."""

    url: str
    script: Path
    streams: Endpoint | None = None


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> WrkFigures:
    """The figures of `wrk --latency` output."""
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.MULTILINE))
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


def wrk_script(directory: Path, token: str | None) -> Path:
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


def wrk(url: str, script: Path, connections: int, duration: float) -> WrkFigures:
    """One `wrk -t1` run on the load core."""
    command = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}"]
    command += [f"-d{duration:g}s", "--latency", "-s", str(script), url]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    return parse_wrk(done.stdout)


def start_floor(group: ProcessGroup, name: str, upstream: str) -> str:
    """Start the floor `name` (a key of `_FLOOR_APPS`) in front of `upstream`; its URL."""
    return start_floor_process(group, name, upstream)[0]


def start_floor_process(group: ProcessGroup, name: str, upstream: str) -> tuple[str, int]:
    """`start_floor`, also giving the floor's pid (for its CPU time)."""
    port = free_port()
    command = python_module(
        "uvicorn",
        _FLOOR_APPS[name],
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
    env = {"BENCH_UPSTREAM_CLIENT": "aiohttp", "BENCH_UPSTREAM_URL": upstream}
    label = "floor-" + ("raw" if name == RAW_FLOOR else "litestar") + f"-{port}"
    process = group.start(label, command, GATEWAY_CORE, env=env, port=port)
    return f"http://127.0.0.1:{port}/v1/chat/completions", process.pid


def _floor_target(
    group: ProcessGroup, work: Path, name: str, instant: str, paced: str | None
) -> Target:
    """A floor for plain requests (at the instant mock) and, when `paced` is given, a
    second one of the same kind for the paced streams (at the paced mock)."""
    streams = None
    if paced is not None:
        streams = Endpoint.post_json(start_floor(group, name, paced), chat_body(True, PACED_MODEL))
    return Target(start_floor(group, name, instant), wrk_script(work, None), streams)


def _gateway_target(work: Path, gateway: RunningGateway, streams: bool) -> Target:
    url = f"{gateway.base_url}/v1/chat/completions"
    auth = [("Authorization", f"Bearer {gateway.token}")]
    paced = Endpoint.post_json(url, chat_body(True, PACED_MODEL), auth) if streams else None
    return Target(url, wrk_script(work, gateway.token), paced)


def _start_before(
    group: ProcessGroup,
    work: Path,
    checkout: Path,
    backend: str,
    urls: tuple[str, str],
    streams: bool,
) -> Target:
    """A gateway on `backend` importing `proxy` from `checkout` (PYTHONPATH comes
    first). On PostgreSQL + Redis it shares the other gateway's database and ledger,
    as two instances of one deployment do."""
    directory = work / "before"
    directory.mkdir()
    pythonpath = {"PYTHONPATH": str(checkout.resolve())}
    gateway = start_gateway(group, directory, backend, *urls, pythonpath)
    return _gateway_target(work, gateway, streams)


def _streams(endpoint: Endpoint, seconds: float) -> StreamFigures:
    result = uvloop.run(run_load(endpoint, _STREAMS, seconds))
    return StreamFigures(result.rate_per_s, result.ttft_p99_ms, result.errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", action="store_true", help="3 s x 1 round: a smoke run")
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="sqlite")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout whose gateway runs too (on --backend; SQLite with `all`)",
    )
    parser.add_argument("--no-streams", action="store_true", help="skip the paced streams")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also a SQLite gateway with this many workers, free on every core (scaling)",
    )
    args = parser.parse_args(argv)
    if args.short:
        args.duration, args.rounds = 3.0, 1
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    pin_current_process(LOAD_CORE)  # the stream load generator runs here, beside wrk
    streams = not args.no_streams
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    gateways: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="wrk-compare-") as tmp,
        ProcessGroup(Path(tmp)) as group,
    ):
        work = Path(tmp)
        instant, paced = start_mocks(group)
        direct_streams = (
            Endpoint.post_json(f"{paced}/chat/completions", chat_body(True, PACED_MODEL))
            if streams
            else None
        )
        targets: dict[str, Target] = {
            MOCK: Target(f"{instant}/chat/completions", wrk_script(work, None), direct_streams),
        }
        for floor in (LITESTAR_FLOOR, RAW_FLOOR):
            targets[floor] = _floor_target(group, work, floor, instant, paced if streams else None)
        for backend in backends:
            backend_dir = work / backend
            backend_dir.mkdir()
            gateway = start_gateway(group, backend_dir, backend, instant, paced)
            gateways.append(f"gateway, {backend}")
            targets[gateways[-1]] = _gateway_target(work, gateway, streams)
        if args.workers > 1:
            directory = work / f"workers-{args.workers}"
            directory.mkdir()
            gateway = start_gateway(
                group, directory, "sqlite", instant, paced, workers=args.workers
            )
            gateways.append(f"gateway, sqlite, {args.workers} workers on every core")
            targets[gateways[-1]] = _gateway_target(work, gateway, streams)
        if args.before is not None:
            before = "sqlite" if args.backend == "all" else args.backend
            gateways.append(f"gateway, {before}, code of {args.before}")
            targets[gateways[-1]] = _start_before(
                group, work, args.before, before, (instant, paced), streams
            )
        for target in targets.values():  # warm-up: first requests, caches, pools
            wrk(target.url, target.script, 8, 2)
        runs: dict[str, dict[int, list[WrkFigures]]] = {name: {1: [], 64: []} for name in targets}
        stream_runs: dict[str, list[StreamFigures]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for connections in (1, 64):
                for name, target in targets.items():
                    figures = wrk(target.url, target.script, connections, args.duration)
                    runs[name][connections].append(figures)
            for name, target in targets.items():
                if target.streams is not None:
                    stream_runs[name].append(_streams(target.streams, args.duration))
    medians = {
        name: TargetFigures(median_wrk(r[1]), median_wrk(r[64]), median_streams(stream_runs[name]))
        for name, r in runs.items()
    }
    _report(args, medians, runs, stream_runs, gateways)
    return 0


def _report(
    args: argparse.Namespace,
    medians: dict[str, TargetFigures],
    runs: dict[str, dict[int, list[WrkFigures]]],
    stream_runs: dict[str, list[StreamFigures]],
    gateways: list[str],
) -> None:
    print(f"# {machine_description()}")
    print(f"# wrk -t1, {args.duration:g} s x {args.rounds} rounds interleaved, medians")
    print(
        "| target | c=1 p50 ms | c=1 p99 ms | c=64 req/s | c=64 p99 ms "
        f"| {_STREAMS} paced streams/s | TTFT p99 ms | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, figures in medians.items():
        one, many, paced = figures.c1, figures.c64, figures.streams
        errors = one.errors + many.errors + (paced.errors if paced else 0)
        stream_cells = f"{paced.streams_per_s:,.1f} | {paced.ttft_p99_ms:.1f}" if paced else "— | —"
        print(
            f"| {name} | {one.p50_ms:.2f} | {one.p99_ms:.2f} | {many.requests_per_s:,.0f} "
            f"| {many.p99_ms:.1f} | {stream_cells} | {errors} |"
        )
    for name in gateways:
        print(ratio_line(name, medians))
    for name, per in runs.items():  # every round, for the record
        rounds = "; ".join(
            f"c={c}: "
            + ", ".join(
                f"{f.requests_per_s:,.0f}/s p50 {f.p50_ms:.2f} p99 {f.p99_ms:.2f}" for f in figures
            )
            for c, figures in per.items()
        )
        streamed = ", ".join(
            f"{f.streams_per_s:,.1f}/s TTFT p99 {f.ttft_p99_ms:.1f}" for f in stream_runs[name]
        )
        print(f"# {name}: {rounds}" + (f"; streams: {streamed}" if streamed else ""))


if __name__ == "__main__":
    sys.exit(main())
