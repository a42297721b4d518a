"""Cold load of the 1,000-rule policy, repeated in fresh interpreters (not a test).

Each run is a new Python process that imports `policy_engine` and calls
`Engine.from_sources` on `engine_bench.thousand_rule_policy()`; it reports the
import, the load and their sum, timed from before the import. Single cold loads
swing by a few hundred milliseconds on a shared machine, so compare medians of
many runs, and compare trees interleaved (`--tree` once per checkout: the runs
alternate between them).

Run: `.venv/bin/python bench/cold_load.py --runs 15 [--tree DIR --tree DIR2] [--cpu]`
(`--cpu` reports process CPU time instead of wall time: steadier under load).
With PYTHONDONTWRITEBYTECODE set and no `__pycache__`, every import compiles
from source; without it, the first run writes the bytecode the others read.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_bench import thousand_rule_policy

_CHILD = """import sys, time
clock = time.process_time if {cpu} else time.perf_counter
start = clock()
sys.path.insert(0, {tree!r})
import policy_engine
imported = clock()
policy_engine.Engine.from_sources({{"big.rego": open({policy!r}).read()}})
done = clock()
print(imported - start, done - imported)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tree", action="append", help="a checkout to load from (repeatable)")
    parser.add_argument("--cpu", action="store_true", help="process CPU time, not wall time")
    args = parser.parse_args()
    trees = args.tree or [str(Path(__file__).resolve().parents[1])]
    policy = Path("/tmp/policy_engine_cold_load.rego")
    policy.write_text(thousand_rule_policy(), encoding="utf-8")
    samples: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree in trees:
            code = _CHILD.format(cpu=args.cpu, tree=tree, policy=str(policy))
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            imported, loaded = (float(x) for x in out.stdout.split())
            samples[tree].append((imported, loaded))
    what = "CPU" if args.cpu else "wall"
    for tree, runs in samples.items():
        imports = statistics.median(i for i, _ in runs) * 1000
        loads = statistics.median(load for _, load in runs) * 1000
        totals = statistics.median(i + load for i, load in runs) * 1000
        print(
            f"{tree}: median of {len(runs)} ({what}): import {imports:.0f} ms, "
            f"load {loads:.0f} ms, total {totals:.0f} ms"
        )


if __name__ == "__main__":
    main()
