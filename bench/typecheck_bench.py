"""What the type checker (the `types` load stage) costs (not a test).

Type checking happens at load only, so decisions cost the same; this measures
the load side:

- the cold load of the generated 1,000-rule policy (`engine_bench`), in fresh
  processes, with and without the `types` stage, alternating so both sides see
  the same machine load;
- in one warm process, the stage alone on that policy and on the shipped
  `policies/` directory with `schemas/input.schema.json`.

Run: `.venv/bin/python bench/typecheck_bench.py [--runs N]`
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import cold_load_seconds, thousand_rule_policy  # noqa: E402
from policy_engine.check import check_modules, check_types_stage  # noqa: E402
from policy_engine.engine import _parse_all  # noqa: E402
from policy_engine.loader import read_policy_files  # noqa: E402
from policy_engine.typecheck import parse_input_schema  # noqa: E402

WITHOUT_TYPES = (
    "import policy_engine.engine as engine_module\n"
    "engine_module.check_types_stage = lambda *args, **kwargs: []\n"
)


def cold_loads(runs: int) -> tuple[list[float], list[float]]:
    policy = thousand_rule_policy()
    load = f"from policy_engine import Engine\nEngine.from_sources({{'big.rego': {policy!r}}})"
    with_types: list[float] = []
    without_types: list[float] = []
    for _ in range(runs):
        with_types.append(cold_load_seconds(load))
        without_types.append(cold_load_seconds(WITHOUT_TYPES + load))
    return with_types, without_types


def stage_ms(sources: dict[str, str], schema_text: str | None, repeat: int = 5) -> float:
    modules, problems = _parse_all(sources)
    index, problems = check_modules(modules)
    assert not problems
    schema = parse_input_schema(schema_text, "input.schema.json") if schema_text else None
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        assert check_types_stage(modules, index, schema) == []
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with_types, without_types = cold_loads(args.runs)
    print(
        "cold load, 1,000-rule policy (fresh process), median of "
        f"{args.runs}: with types {statistics.median(with_types) * 1000:.0f} ms, "
        f"without {statistics.median(without_types) * 1000:.0f} ms"
    )
    big = {"big.rego": thousand_rule_policy()}
    print(f"types stage alone, 1,000-rule policy: {stage_ms(big, None):.1f} ms")
    shipped = read_policy_files([REPO / "policies"])
    schema = (REPO / "schemas" / "input.schema.json").read_text(encoding="utf-8")
    print(f"types stage alone, policies/ with the input schema: {stage_ms(shipped, schema):.1f} ms")


if __name__ == "__main__":
    main()
