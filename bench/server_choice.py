"""Choose the ASGI server and event loop by measurement (issue 7 point 2).

The pass-through proxy on aiohttp (the chosen upstream client) under each
server, pinned to core 0, the mock upstream and the load generator on core 1:

    python -m bench.server_choice [--duration 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import uvloop

from bench.client_choice import Row, markdown_table, measure_server
from bench.processes import (
    GATEWAY_CORE,
    LOAD_CORE,
    ProcessGroup,
    free_port,
    machine_description,
    pin_current_process,
    python_module,
)

__all__ = ["main"]

_APP = "bench.passthrough_proxy:app_from_env"


def _servers(port: int) -> dict[str, list[str]]:
    """Server name → command serving the pass-through app on ``port``."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    uvicorn = ["uvicorn", _APP, "--factory", "--no-access-log", "--log-level", "warning"]
    servers = {
        "uvicorn, uvloop + httptools": python_module(
            *uvicorn, "--loop", "uvloop", "--http", "httptools", *address
        ),
        "uvicorn, asyncio + h11": python_module(
            *uvicorn, "--loop", "asyncio", "--http", "h11", *address
        ),
    }
    granian = shutil.which("granian", path=str(Path(sys.executable).parent))
    if granian is not None:
        servers["granian, ASGI, uvloop, 1 worker"] = [
            granian, "--interface", "asgi", "--factory", "--loop", "uvloop",
            "--workers", "1", "--runtime-mode", "st", "--no-access-log",
            "--log-level", "warning", *address, _APP,
        ]  # fmt: skip
    return servers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="measure ASGI servers")
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    pin_current_process(LOAD_CORE)
    print(f"machine: {machine_description()}", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as logs, ProcessGroup(Path(logs)) as group:
        mock_port = free_port()
        mock = python_module("bench.mock_upstream", "--port", str(mock_port), "--mode", "paced")
        group.start("mock", mock, LOAD_CORE, port=mock_port)
        mock_base = f"http://127.0.0.1:{mock_port}"
        plain, streams = uvloop.run(measure_server(mock_base, args.duration))
        rows.append(Row("direct to mock", plain, streams))
        env = {"BENCH_UPSTREAM_CLIENT": "aiohttp", "BENCH_UPSTREAM_URL": f"{mock_base}/v1"}
        port = free_port()
        for name, command in _servers(port).items():
            server = group.start("server", command, GATEWAY_CORE, env=env, port=port)
            plain, streams = uvloop.run(measure_server(f"http://127.0.0.1:{port}", args.duration))
            group.stop(server)
            rows.append(Row(name, plain, streams))
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
