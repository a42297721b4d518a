"""Where does the gateway spend its time? py-spy on `gateway serve` under load.

    .venv/bin/pip install py-spy   # a tool, not a dependency of the project
    python -m bench.profile_gateway [--backend sqlite|postgres-redis] [--seconds 8] [--gil]
        [--self] [--raw PATH] [--controls]

Starts the mocks and a real gateway exactly as `bench.run` does, samples the
gateway with py-spy while 64 (`--concurrency`) concurrent plain requests run, and prints the
functions holding the largest inclusive share of samples.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import msgspec
import uvloop

from bench.controls_compare import controlled_key
from bench.gateway_setup import BACKENDS, start_gateway, start_mocks
from bench.loadgen import run_load
from bench.processes import LOAD_CORE, ProcessGroup, pin_current_process

__all__ = ["inclusive_shares", "main", "self_shares"]


def inclusive_shares(raw_profile: str) -> tuple[int, list[tuple[float, str]]]:
    """Total samples and (share, function [file]) by inclusive samples, largest first.

    ``raw_profile`` is py-spy's ``--format raw`` output: one ``frame;frame;… count``
    line per distinct stack, each frame ``function (file:line)``.
    """
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_profile.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = set()
        for frame in stack.split(";"):
            function, _, where = frame.partition(" (")
            names.add(f"{function} [{where.split(':')[0]}]")
        for name in names:
            inclusive[name] += count
    if total == 0:
        return 0, []
    return total, [(count / total, name) for name, count in inclusive.most_common()]


def self_shares(raw_profile: str) -> tuple[int, list[tuple[float, str]]]:
    """Total samples and (share, function [file:line]) by self samples (the innermost
    frame only), largest first: where the CPU actually is, not who called it."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw_profile.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        function, _, where = stack.split(";")[-1].partition(" (")
        own[f"{function} [{where.rstrip(')')}]"] += count
    if total == 0:
        return 0, []
    return total, [(count / total, name) for name, count in own.most_common()]


def _py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed; run `.venv/bin/pip install py-spy`")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="profile the gateway under load")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples holding the GIL: Python CPU time, without waits in C or syscalls",
    )
    parser.add_argument("--self", action="store_true", help="also the self (innermost) shares")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw profile at this path")
    parser.add_argument(
        "--controls",
        action="store_true",
        help="send with a key carrying every control (bench.controls_compare), not the plain key",
    )
    args = parser.parse_args(argv)
    spy = _py_spy()
    pin_current_process(LOAD_CORE)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ProcessGroup(Path(tmp)) as group:
        urls = start_mocks(group)
        gateway = start_gateway(group, Path(tmp), args.backend, urls[0], urls[1])
        endpoint = gateway.plain_chat()
        if args.controls:
            token, controls, _ = controlled_key(gateway)
            print("controls set: " + ", ".join(f"{c.option} {c.value}" for c in controls))
            endpoint = msgspec.structs.replace(
                endpoint,
                raw_request=endpoint.raw_request.replace(gateway.token.encode(), token.encode()),
            )
        output = Path(tmp) / "profile.raw"
        record = [spy, "record", "-p", str(gateway.pid), "-d", str(args.seconds), "-r", "200"]
        record += ["--format", "raw", "-o", str(output), "--nonblocking"]
        if args.gil:
            record.append("--gil")
        sampler = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load = uvloop.run(run_load(endpoint, args.concurrency, args.seconds + 1.0))
        _, errors = sampler.communicate(timeout=60)
        if not output.exists():
            raise SystemExit(f"py-spy wrote no profile: {errors.decode(errors='replace')[-800:]}")
        raw = output.read_text()
        if args.raw is not None:
            args.raw.write_text(raw)
        total, shares = inclusive_shares(raw)
    rate = f"{load.rate_per_s:,.0f} req/s at {args.concurrency} concurrent"
    print(f"{rate} while sampling; {total} samples")
    for share, name in shares[: args.top]:
        print(f"{share:6.1%}  {name}")
    if args.self:
        print("self (innermost frame):")
        for share, name in self_shares(raw)[1][: args.top]:
            print(f"{share:6.1%}  {name}")


if __name__ == "__main__":
    main()
