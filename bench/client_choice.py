"""Choose the upstream HTTP client by measurement (issue 4 point 5).

Runs the pass-through proxy (``bench/passthrough_proxy.py``) once per client
under uvicorn (uvloop, httptools) pinned to core 0, with the mock upstream
and this load generator on core 1, and prints a Markdown table next to a
direct call to the same mock.

    python -m bench.client_choice [--duration 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import msgspec
import uvloop

from bench.loadgen import Endpoint, LoadResult, chat_body, run_load
from bench.passthrough_proxy import CLIENT_KINDS
from bench.processes import (
    GATEWAY_CORE,
    LOAD_CORE,
    ProcessGroup,
    free_port,
    machine_description,
    pin_current_process,
    python_module,
)

__all__ = ["Row", "main", "markdown_table", "measure_server"]


class Row(msgspec.Struct, frozen=True):
    name: str
    plain: LoadResult
    streams: LoadResult


async def measure_server(base_url: str, duration_s: float) -> tuple[LoadResult, LoadResult]:
    """64 concurrent plain requests, then 100 concurrent paced streams."""
    url = f"{base_url}/v1/chat/completions"
    plain = Endpoint.post_json(url, chat_body(stream=False))
    streamed = Endpoint.post_json(url, chat_body(stream=True))
    await run_load(plain, 64, 1.0, warmup_s=0.0)  # warm pools and caches
    return (
        await run_load(plain, 64, duration_s),
        await run_load(streamed, 100, duration_s),
    )


def _uvicorn(port: int) -> list[str]:
    return python_module(
        "uvicorn", "bench.passthrough_proxy:app_from_env", "--factory",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| path | req/s @64 | p50 ms | p99 ms | errors"
        " | streams/s @100 paced | TTFT p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        p, s = row.plain, row.streams
        lines.append(
            f"| {row.name} | {p.rate_per_s:,.0f} | {p.latency_p50_ms:.2f} | {p.latency_p99_ms:.2f}"
            f" | {p.errors} | {s.rate_per_s:,.0f} | {s.ttft_p99_ms:.2f} | {s.errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="measure upstream HTTP clients")
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    pin_current_process(LOAD_CORE)
    print(f"machine: {machine_description()}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as logs, ProcessGroup(Path(logs)) as group:
        mock_port = free_port()
        group.start(
            "mock",
            python_module("bench.mock_upstream", "--port", str(mock_port), "--mode", "paced"),
            LOAD_CORE,
            port=mock_port,
        )
        mock_base = f"http://127.0.0.1:{mock_port}"
        plain, streams = uvloop.run(measure_server(mock_base, args.duration))
        rows.append(Row("direct to mock", plain, streams))
        print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
        for kind in CLIENT_KINDS:
            port = free_port()
            env = {"BENCH_UPSTREAM_CLIENT": kind, "BENCH_UPSTREAM_URL": f"{mock_base}/v1"}
            proxy = group.start(f"proxy-{kind}", _uvicorn(port), GATEWAY_CORE, env=env, port=port)
            plain, streams = uvloop.run(measure_server(f"http://127.0.0.1:{port}", args.duration))
            group.stop(proxy)
            rows.append(Row(f"pass-through, {kind}", plain, streams))
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
