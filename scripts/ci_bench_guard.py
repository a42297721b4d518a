"""CI guard: run the gateway benchmark in short mode, fail only on a gross regression.

    python scripts/ci_bench_guard.py [--backend sqlite|postgres-redis|all]

Exit 0 when every measured ratio to the direct call clears the limits in
`bench/guard.py`, 1 on a regression, 2 when the benchmark could not run.
Takes well under a minute for one backend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a plain script from anywhere: make the repo root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import render_markdown
from bench.gateway_setup import BACKENDS
from bench.guard import guard_failures
from bench.run import SHORT, run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="sqlite")
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    command = f"python scripts/ci_bench_guard.py --backend {args.backend}"
    try:
        run = run_benchmark(SHORT, backends, command)
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"ci_bench_guard: the benchmark could not run: {error}", file=sys.stderr)
        return 2
    print(render_markdown(run))
    if run.skipped:
        for backend, why in run.skipped.items():
            print(f"ci_bench_guard: backend {backend} could not run: {why}", file=sys.stderr)
        return 2
    failures = guard_failures(run)
    for failure in failures:
        print(f"ci_bench_guard: FAIL: {failure}", file=sys.stderr)
    if not failures:
        print("ci_bench_guard: ok (no gross regression against the direct call)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
