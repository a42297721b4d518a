"""Instructions per request of a plain key and a key with every control: the gateway
under callgrind, which the machine's load does not move (wall-clock and CPU figures did,
by 20 points between two runs of one tree, at load 10).

    .venv/bin/python -m bench.controls_instructions [--requests 200] [--rounds 1]
        [--keys plain,all,limit,budget,rpm,rates,expiry] [--keep DIR] [--wrapper CMD]
        [--backend sqlite|postgres-redis] [--concurrency 64] [--stream]

Starts the mocks and `gateway serve` (SQLite, or `--backend postgres-redis`) under
`valgrind --tool=callgrind` with instrumentation off, creates the keys (`all`: every
control, as bench.controls_compare; the others one control each), switches
instrumentation on, sends 100 warm-up requests per key, then per key and round zeroes
the counters, sends `--requests` requests at 64 concurrent, waits for every answer and
dumps: instructions / answers. Needs valgrind (`callgrind_control`); ~1 minute per 200
requests. Only the gateway's instructions are counted (on PostgreSQL + Redis, not the
servers'); its periodic work (the key cache's refresh every 0.5 s, the Redis ledger's
flush every 1 s) counts for more requests' worth than at full speed, since the
requests run ~50 times slower under callgrind.

`--wrapper CMD` runs CMD instead of `gateway` (same arguments): a script that runs chosen
functions inside distinct C trampolines (`operator.call`, `itertools.starmap`,
`functools.reduce`, ... see MARKERS) before calling `proxy.cli.main`; the report then adds
each trampoline's inclusive instructions per request, i.e. that piece's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from bench.controls_compare import controlled_key
from bench.gateway_setup import (
    BACKENDS,
    BENCH_CREDITS,
    INSTANT_MODEL,
    UPSTREAM_KEY_ENV,
    RunningGateway,
    _write_config,
    admin_json,
    gateway_command,
    start_mocks,
)
from bench.loadgen import chat_body
from bench.processes import ProcessGroup, free_port

KEYS = {
    "limit": ["--usage-limit", "1000000000.00"],
    "budget": ["--budget", "1000000000.00/day"],
    "rpm": ["--rpm", "1000000000"],
    "rates": ["--rpm", "1000000000", "--tpm", "1000000000000", "--max-parallel", "100000"],
    "expiry": ["--expires-at", "2200-01-01T00:00:00Z"],
}


async def send(url: str, token: str, total: int, concurrency: int, stream: bool = False) -> int:
    body = chat_body(stream, INSTANT_MODEL)
    ok = 0
    left = total
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=600),
    ) as session:

        async def one() -> None:
            nonlocal ok, left
            while left > 0:
                left -= 1
                async with session.post(
                    url,
                    data=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                ) as r:
                    await r.read()
                    ok += r.status == 200

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return ok


def control(pid: int, *args: str) -> str:
    return subprocess.run(
        ["callgrind_control", *args, str(pid)], capture_output=True, text=True, check=False
    ).stdout


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--keys", default="plain,all")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--keep", type=Path)
    p.add_argument("--wrapper")
    p.add_argument("--backend", choices=BACKENDS, default="sqlite")
    p.add_argument("--stream", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cg-") as tmp, ProcessGroup(Path(tmp)) as group:
        work = Path(tmp)
        instant, paced = start_mocks(group)
        port = free_port()
        config = _write_config(work, args.backend, port, instant, paced)
        out = work / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command += [
            f"--callgrind-out-file={out}.%p",
            *([args.wrapper] if args.wrapper else gateway_command()),
            "serve",
        ]
        command += ["--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        process = group.start(
            "gateway", command, None, env={UPSTREAM_KEY_ENV: "sk-bench-not-a-secret"}
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                print((work / "gateway.log").read_text()[-3000:])
                return 1
            time.sleep(0.5)
        admin_json(config, "orgs", "credits", "default", BENCH_CREDITS)
        gw = RunningGateway(base, process.pid, "", "", str(config))
        tokens: dict[str, str] = {}
        for name in args.keys.split(","):
            if name == "all":
                tokens[name] = controlled_key(gw)[0]
            else:
                extra = [] if name == "plain" else KEYS[name]
                key = admin_json(config, "keys", "create", "--project", "default", *extra)
                tokens[name] = str(key["token"])
        url = f"{base}/v1/chat/completions"
        print(control(process.pid, "-i", "on"), end="")
        for token in tokens.values():  # warm-up
            asyncio.run(send(url, token, 100, args.concurrency, args.stream))
        results: dict[str, list[float]] = {n: [] for n in tokens}
        results_pieces: dict[str, list[dict[str, float]]] = {}
        for r in range(args.rounds):
            order = list(tokens) if r % 2 == 0 else list(reversed(tokens))
            for name in order:
                control(process.pid, "-z")
                ok = asyncio.run(
                    send(url, tokens[name], args.requests, args.concurrency, args.stream)
                )
                control(process.pid, "-d", name)
                files = sorted(work.glob("callgrind.out.*"), key=lambda f: f.stat().st_mtime)
                newest = files[-1]
                summary = re.search(r"^summary: (\d+)", newest.read_text(), re.M) or re.search(
                    r"^totals: (\d+)", newest.read_text(), re.M
                )
                instructions = int(summary.group(1)) if summary else 0
                if args.wrapper:
                    pieces = marker_costs(newest)
                    results_pieces.setdefault(name, []).append(
                        {k: v / max(ok, 1) for k, v in pieces.items()}
                    )
                if args.keep:
                    args.keep.mkdir(exist_ok=True, parents=True)
                    newest.rename(args.keep / f"{name}-{r}.out")
                else:
                    newest.unlink()
                per = instructions / max(ok, 1)
                results[name].append(per)
                print(f"{name} round {r}: {ok} ok, {per:,.0f} Ir/request", flush=True)
        base_ir = None
        for name, values in results.items():
            m = min(values)
            base_ir = base_ir or m
            each = ", ".join(f"{v:,.0f}" for v in values)
            print(f"| {name} | {m:,.0f} | {base_ir / m:.1%} | {each} |")
        if results_pieces:
            names = list(results_pieces)
            print("| piece | " + " | ".join(names) + " |")
            for marker, label in MARKERS.items():
                row = [min(r.get(marker, 0) for r in results_pieces[n]) for n in names]
                print(f"| {label} | " + " | ".join(f"{v:,.0f}" for v in row) + " |")
    return 0


MARKERS = {
    "_operator_call": "_decide (input + policy)",
    "filter_next": "build_input",
    "dropwhile_next": "LoadedPolicy.decide",
    "starmap_next": "rate_headers",
    "functools_reduce": "SqliteStore._flush (inline writes)",
    "sqlite3_wal_checkpoint_v2": "WAL checkpoint",
    "_sre_SRE_Pattern_search": "re search",
    "PyDecType_FromFloatExact": "Decimal(float)",
}


def marker_costs(path: Path) -> dict[str, float]:
    done = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, float] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"^\s*([0-9,]+) \([^)]*\)\s+(.*)$", line)
        if not m:
            continue
        cost = int(m.group(1).replace(",", ""))
        for marker in MARKERS:
            if (
                re.search(r"[:\s]" + marker + r"(\s|$|')", m.group(2))
                and "'" not in m.group(2).split(marker)[1][:1]
            ):
                found[marker] = max(found.get(marker, 0), cost)
    return found


if __name__ == "__main__":
    sys.exit(main())
