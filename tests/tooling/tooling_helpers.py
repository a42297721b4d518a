"""Shared paths and a runner for the `policy-engine` tooling subcommands, in process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import msgspec
import pytest

from policy_engine.tooling.cli import main

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
GATEWAY_REGO = POLICIES / "gateway.rego"
CATALOG = POLICIES / "catalog.yaml"
INPUT_SCHEMA = REPO / "schemas" / "input.schema.json"
FIXTURES = REPO / "tests" / "fixtures" / "tooling"
CONFORMANCE = REPO.parent / "shared" / "conformance" / "opa"


class Run(msgspec.Struct, frozen=True):
    status: int
    out: str
    err: str


def run_cli(args: Sequence[str]) -> Run:
    """`policy-engine ARGS` in this process; stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(args))
    return Run(status, out.getvalue(), err.getvalue())


def run_cli_in_fresh_process(args: Sequence[str]) -> Run:
    """`policy-engine ARGS` in a new interpreter.

    A seeded `prop` search is reproducible only from the same starting state: in the test
    process, hypothesis' internal state (and so which inputs a seed generates) shifts with
    whatever other tests ran and imported before, so the same seed found a planted bug in
    one run of the suite and missed it in the next. A fresh interpreter makes the seed mean
    one search, as it does for a user on the command line."""
    done = subprocess.run(
        [sys.executable, "-m", "policy_engine.tooling", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=600,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def conformance_modules() -> Iterator[tuple[str, str]]:
    """(id, module text) for every module in OPA's conformance cases, if present."""
    import yaml

    for path in sorted(CONFORMANCE.rglob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in document.get("cases", []):
            for index, module in enumerate(case.get("modules") or []):
                yield f"{path.parent.name}/{path.stem}#{case['note']}#{index}", module


def skip_without_conformance() -> None:
    if CONFORMANCE.is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail(f"OPA conformance modules missing at {CONFORMANCE}")
    pytest.skip(f"OPA conformance modules not found at {CONFORMANCE} (../shared is absent)")
