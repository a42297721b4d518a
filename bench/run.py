"""The gateway benchmark: one command, everything started on 127.0.0.1, bounded.

    python -m bench.run [--short] [--backend sqlite|postgres-redis|all] [--json PATH]

Starts two mock upstreams (instant and paced) on the load core, then per
ledger backend a real `gateway serve` on the gateway core with a temp config
and a key made by the admin CLI, and measures each figure side by side with a
direct call to the same mock (see docs/benchmarks.md, "Gateway"). Everything
it started is stopped when it ends, on error or on its time limit too.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
import uvloop

from bench.figures import (
    BackendFigures,
    Memory,
    RunFigures,
    added_latency,
    decision_latency,
    render_markdown,
)
from bench.gateway_setup import (
    BACKENDS,
    INSTANT_MODEL,
    PACED_MODEL,
    RunningGateway,
    fetch_text,
    start_gateway,
    start_mocks,
)
from bench.loadgen import Endpoint, LoadResult, chat_body, interleaved, run_load
from bench.processes import (
    LOAD_CORE,
    ProcessGroup,
    machine_description,
    pin_current_process,
    rss_mib,
)

__all__ = ["FULL", "SHORT", "Plan", "main", "run_benchmark"]


class Plan(msgspec.Struct, frozen=True):
    """How long each phase runs; the harness's whole time bound derives from it."""

    name: str
    c1_rounds: int
    ttft_rounds: int
    load_s: float
    soak_s: float
    time_limit_s: int
    """Hard cap on the whole run; everything started is stopped when it is hit."""
    engine_bench_rounds: int
    """Rounds of `bench/engine_bench.py` run at the end (0: skip it)."""


FULL = Plan(
    "full",
    c1_rounds=2000,
    ttft_rounds=300,
    load_s=10.0,
    soak_s=120.0,
    time_limit_s=900,
    engine_bench_rounds=30,
)
SHORT = Plan(
    "short",
    c1_rounds=300,
    ttft_rounds=60,
    load_s=2.0,
    soak_s=3.0,
    time_limit_s=150,
    engine_bench_rounds=0,
)


class _Endpoints(msgspec.Struct, frozen=True):
    direct_plain: Endpoint
    gateway_plain: Endpoint
    direct_stream: Endpoint
    gateway_stream: Endpoint
    direct_paced: Endpoint
    gateway_paced: Endpoint


def _endpoints(instant: str, paced: str, gateway: RunningGateway) -> _Endpoints:
    path = "/chat/completions"
    auth = [("Authorization", f"Bearer {gateway.token}")]
    gateway_url = f"{gateway.base_url}/v1{path}"
    plain, stream = chat_body(False, INSTANT_MODEL), chat_body(True, INSTANT_MODEL)
    paced_stream = chat_body(True, PACED_MODEL)
    return _Endpoints(
        direct_plain=Endpoint.post_json(instant + path, plain),
        gateway_plain=Endpoint.post_json(gateway_url, plain, auth),
        direct_stream=Endpoint.post_json(instant + path, stream),
        gateway_stream=Endpoint.post_json(gateway_url, stream, auth),
        direct_paced=Endpoint.post_json(paced + path, paced_stream),
        gateway_paced=Endpoint.post_json(gateway_url, paced_stream, auth),
    )


class _RssSampler:
    """Samples the gateway's RSS in the background; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib(self._pid))
            await asyncio.sleep(0.25)

    def __enter__(self) -> _RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def _settled_rss(pid: int) -> float:
    await asyncio.sleep(1.0)  # let in-flight work and buffers drain
    return rss_mib(pid)


async def _check_gateway_answers(endpoints: _Endpoints, gateway: RunningGateway) -> None:
    """Fail early and clearly when the gateway does not answer 200 to the bench key."""
    for endpoint in (endpoints.gateway_plain, endpoints.gateway_stream, endpoints.gateway_paced):
        [[sample]] = await interleaved([endpoint], 1)
        if sample.status != 200 or not sample.complete:
            raise RuntimeError(
                f"the gateway answered {sample.status} (complete={sample.complete}) to "
                f"{endpoint.raw_request.split(b' HTTP')[0].decode()}; see {gateway.log_path}"
            )


async def _load_pair(
    direct: Endpoint, gateway: Endpoint, concurrency: int, seconds: float
) -> tuple[LoadResult, LoadResult]:
    return (
        await run_load(direct, concurrency, seconds),
        await run_load(gateway, concurrency, seconds),
    )


async def _measure_backend(
    plan: Plan, backend: str, gateway: RunningGateway, instant: str, paced: str
) -> BackendFigures:
    endpoints = _endpoints(instant, paced, gateway)
    await _check_gateway_answers(endpoints, gateway)
    await run_load(endpoints.gateway_plain, 16, 1.0, warmup_s=0.0)  # warm caches and pools
    idle = await _settled_rss(gateway.pid)
    pair = [endpoints.direct_plain, endpoints.gateway_plain]
    await interleaved(pair, 50)  # first requests on fresh connections are not the steady state
    c1 = await interleaved(pair, plan.c1_rounds)
    ttft = await interleaved([endpoints.direct_stream, endpoints.gateway_stream], plan.ttft_rounds)
    with _RssSampler(gateway.pid) as under_load:
        direct_64, gateway_64 = await _load_pair(
            endpoints.direct_plain, endpoints.gateway_plain, 64, plan.load_s
        )
        direct_streams, gateway_streams = await _load_pair(
            endpoints.direct_paced, endpoints.gateway_paced, 100, plan.load_s
        )
        after_load = await _settled_rss(gateway.pid)
        await run_load(endpoints.gateway_plain, 64, plan.soak_s, warmup_s=0.0)
    after_soak = await _settled_rss(gateway.pid)
    metrics = await asyncio.to_thread(fetch_text, f"{gateway.base_url}/metrics")
    return BackendFigures(
        backend=backend,
        latency_c1=added_latency(c1[0], c1[1], ttft=False),
        ttft_c1=added_latency(ttft[0], ttft[1], ttft=True),
        direct_64=direct_64,
        gateway_64=gateway_64,
        direct_streams=direct_streams,
        gateway_streams=gateway_streams,
        memory=Memory(idle, under_load.peak, after_load, after_soak, plan.soak_s),
        decision=decision_latency(metrics) if metrics else None,
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through `with ProcessGroup`, which stops the children.
    raise SystemExit(128 + signum)


async def _within(deadline: float, measure: Coroutine[Any, Any, BackendFigures]) -> BackendFigures:
    """``measure``, cancelled when the run's time limit passes or on SIGTERM.

    Inside the event loop a Python signal handler's exception would be
    swallowed by whichever callback it interrupted, so SIGTERM cancels the
    task instead. Starting processes has its own timeouts.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await asyncio.wait_for(measure, timeout=max(deadline - time.monotonic(), 0.0))
    except TimeoutError:
        raise TimeoutError(
            "the benchmark hit its time limit; everything it started is stopped"
        ) from None
    except asyncio.CancelledError:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def run_benchmark(plan: Plan, backends: tuple[str, ...], command: str) -> RunFigures:
    """Run every phase for each backend; a backend that cannot start is reported skipped."""
    pin_current_process(LOAD_CORE)
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run_phases(plan, backends, command)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _run_phases(plan: Plan, backends: tuple[str, ...], command: str) -> RunFigures:
    deadline = time.monotonic() + plan.time_limit_s
    measured: list[BackendFigures] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ProcessGroup(Path(tmp)) as group:
        urls = start_mocks(group)
        for backend in backends:
            work = Path(tmp) / backend
            work.mkdir()
            try:
                gateway = start_gateway(group, work, backend, urls[0], urls[1])
            except RuntimeError as error:
                skipped[backend] = str(error)
                group.stop_all_named(f"gateway-{backend}")
                continue
            measure = _measure_backend(plan, backend, gateway, urls[0], urls[1])
            measured.append(uvloop.run(_within(deadline, measure)))
            group.stop_all_named(f"gateway-{backend}")
    engine = _engine_bench(plan.engine_bench_rounds) if plan.engine_bench_rounds else None
    return RunFigures(machine_description(), plan.name, command, tuple(measured), skipped, engine)


def _engine_bench(rounds: int) -> str:
    """The policy engine micro-benchmark's report (a colleague's script), bounded."""
    script = Path(__file__).resolve().parent / "engine_bench.py"
    if not script.exists():
        return f"{script} is absent"
    command = [sys.executable, str(script), "--rounds", str(rounds)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        return f"`{shlex.join(command)}` took more than 180 s"
    if done.returncode != 0:
        return f"`{shlex.join(command)}` exited with {done.returncode}: {done.stderr[-1000:]}"
    return f"$ {shlex.join(command)}\n{done.stdout}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark the gateway against a direct call")
    parser.add_argument("--short", action="store_true", help="CI mode: well under a minute")
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    command = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    run = run_benchmark(SHORT if args.short else FULL, backends, command.strip())
    print(render_markdown(run))
    print(f"(took {time.monotonic() - started:.0f} s)")
    if args.json is not None:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(run)))
    return 0 if run.backends else 1


if __name__ == "__main__":
    sys.exit(main())
