"""What a key's controls cost (issue 13's benchmark point): c=64 throughput of a key
with every control set against a key without, on one gateway, in one interleaved run.

    .venv/bin/python -m bench.controls_compare [--short] [--duration 10] [--rounds 5]
        [--backend sqlite|postgres-redis]

Starts the mocks and a real `gateway serve` as `bench.wrk_compare` does, with the
bench's plain key and a second key of the same project carrying every control
`gateway keys create` offers in this checkout — usage limit, period budget, RPM, TPM,
max parallel requests, expiry — each set far above what the run can reach, so none
ever refuses (a refusal would show as errors). The controls are found by asking the
CLI (`keys create --help`), so the mode measures whatever has landed; a control the
CLI offers but refuses with the value tried is reported, not hidden. Then `wrk -c64`
alternates between the two keys, round after round; the ratio of the medians is the
cost of the controls (issue 13: at most 10%).

Each run also reads the gateway's CPU seconds (user + system, its whole process tree)
around `wrk` and divides by the requests served: on a saturated core throughput is the
inverse of CPU time per request, and that figure moves far less than req/s when other
work shares the machine, so the ratio of the medians of CPU per request is printed
next to the req/s ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

from bench.cpu_per_request import tree_cpu_seconds
from bench.gateway_setup import (
    BACKENDS,
    RunningGateway,
    admin_json,
    gateway_command,
    start_gateway,
    start_mocks,
)
from bench.processes import (
    ProcessGroup,
    inherited_environment,
    machine_description,
)
from bench.wrk_compare import wrk, wrk_script
from bench.wrk_ratios import WrkFigures

__all__ = ["CONTROLS", "Control", "controlled_key", "main", "offered_controls"]


class Control(msgspec.Struct, frozen=True):
    """One control of `gateway keys create`: its option and a value no run reaches."""

    option: str
    value: str
    what: str


CONTROLS = (
    Control("--usage-limit", "1000000000.00", "all-time usage limit"),
    Control("--budget", "1000000000.00/day", "period budget"),
    Control("--rpm", "1000000000", "requests per minute"),
    Control("--tpm", "1000000000000", "tokens per minute"),
    Control("--max-parallel", "100000", "max parallel requests"),
    Control("--expires-at", "2200-01-01T00:00:00Z", "expiry"),
)


def offered_controls(help_text: str) -> list[Control]:
    """The controls whose option appears in `gateway keys create --help`."""
    words = set(help_text.replace("[", " ").replace("]", " ").replace(",", " ").split())
    return [control for control in CONTROLS if control.option in words]


def _create_help(config: str) -> str:
    command = [*gateway_command(), "keys", "create", "--help", "--config", config]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=inherited_environment()
    )
    return done.stdout


def controlled_key(gateway: RunningGateway) -> tuple[str, list[Control], list[str]]:
    """A key with every offered control: its token, the controls set, and the problems of
    those the CLI refused (dropped one by one until the key is created)."""
    config = Path(gateway.config_path)
    controls = offered_controls(_create_help(gateway.config_path))
    problems: list[str] = []
    while True:
        args = ["keys", "create", "--project", "default", "--description", "controls"]
        for control in controls:
            args += [control.option, control.value]
        try:
            key = admin_json(config, *args)
        except RuntimeError as error:
            refused = next((c for c in controls if c.option in str(error)), None)
            if refused is None:
                raise
            problems.append(f"{refused.option} {refused.value}: {str(error)[-300:]}")
            controls = [c for c in controls if c is not refused]
            continue
        token = key.get("token")
        if not isinstance(token, str):
            raise RuntimeError(f"`gateway keys create --json` printed no token: {key!r}")
        return token, controls, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="3 s x 2 rounds: a smoke run")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    args = parser.parse_args(argv)
    if args.short:
        args.duration, args.rounds = 3.0, 2
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="controls-") as tmp, ProcessGroup(Path(tmp)) as group:
        work = Path(tmp)
        instant, paced = start_mocks(group)
        gateway = start_gateway(group, work, args.backend, instant, paced)
        url = f"{gateway.base_url}/v1/chat/completions"
        token, controls, problems = controlled_key(gateway)
        scripts = {"without controls": wrk_script(work, gateway.token)}
        scripts["with every control"] = wrk_script(work, token)
        for script in scripts.values():  # warm-up: both keys in the key cache, pools open
            wrk(url, script, 8, 2)
        runs: dict[str, list[WrkFigures]] = {name: [] for name in scripts}
        cpu: dict[str, list[float]] = {name: [] for name in scripts}  # µs per request
        for round_index in range(args.rounds):
            # Alternate which key goes first, so neither always follows the other.
            order = list(scripts) if round_index % 2 == 0 else list(reversed(scripts))
            for name in order:
                before = tree_cpu_seconds(gateway.pid)
                figures = wrk(url, scripts[name], 64, args.duration)
                spent = tree_cpu_seconds(gateway.pid) - before
                runs[name].append(figures)
                served = max(1.0, figures.requests_per_s * args.duration)
                cpu[name].append(spent / served * 1e6)
    print(f"# {machine_description()}")
    print(
        f"# gateway, {args.backend}; wrk -t1 -c64, {args.duration:g} s x {args.rounds} rounds, "
        "keys alternating, medians"
    )
    set_text = ", ".join(f"{c.what} ({c.option} {c.value})" for c in controls) or "none"
    print(f"# controls set: {set_text}")
    missing = [c.option for c in CONTROLS if c not in controls]
    if missing:
        print(f"# not offered or refused by this checkout's CLI: {', '.join(missing)}")
    for problem in problems:
        print(f"# refused: {problem}")
    print(
        "| key | c=64 req/s | c=64 p99 ms | errors | rounds (req/s) "
        "| server CPU µs/request | rounds (µs) |"
    )
    print("|---|---:|---:|---:|---|---:|---|")
    medians = {}
    cpu_medians = {}
    for name, figures in runs.items():
        rate = statistics.median(f.requests_per_s for f in figures)
        medians[name] = rate
        cpu_medians[name] = statistics.median(cpu[name])
        p99 = statistics.median(f.p99_ms for f in figures)
        errors = sum(f.errors for f in figures)
        each = ", ".join(f"{f.requests_per_s:,.0f}" for f in figures)
        each_cpu = ", ".join(f"{spent:,.0f}" for spent in cpu[name])
        print(
            f"| {name} | {rate:,.0f} | {p99:.1f} | {errors} | {each} "
            f"| {cpu_medians[name]:,.0f} | {each_cpu} |"
        )
    ratio = medians["with every control"] / medians["without controls"]
    print(f"with every control: {ratio:.1%} of the throughput without (target >= 90%)")
    cpu_ratio = cpu_medians["without controls"] / cpu_medians["with every control"]
    print(
        f"by server CPU per request: {cpu_ratio:.1%} (the throughput share on a saturated "
        "core; steadier than req/s on a shared machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
