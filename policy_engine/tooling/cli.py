"""The tooling subcommands of `policy-engine`: `test`, `prop`, `fmt`, `bench`, and
`eval --explain`.

`register(subparsers)` adds the subcommands to the main parser; each sets
`func(args) -> exit status`. Exit status: 0 success, 1 a test, property or
format check failed, 2 the policies or arguments are wrong.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from policy_engine.errors import EvalError, PolicyError
from policy_engine.tooling.coverage import render_json, render_text
from policy_engine.tooling.explain import EXPLAIN_MODES, Explainer, render_explanation
from policy_engine.tooling.fmt import format_text
from policy_engine.tooling.loading import load_policy_set, read_document
from policy_engine.tooling.testing import render_results, run_tests
from policy_engine.tooling.yaml_tests import find_yaml_tests, load_yaml_tests
from policy_engine.values import UNDEFINED

__all__ = ["add_explain_option", "main", "register", "run_explain"]

_DATA_HELP = (
    "a JSON/YAML file merged into `data`, or NAME=FILE to place it at `data.NAME` "
    "(repeatable; a catalog.yaml in a policy directory is loaded as data.catalog)"
)


def register(subparsers: Any) -> None:
    """Add `test`, `prop`, `fmt` and `bench` to the `policy-engine` subcommands."""
    test = subparsers.add_parser("test", help="run test_* rules and *.iam_test.yaml cases")
    test.add_argument("paths", nargs="+", metavar="PATH")
    test.add_argument("--run", metavar="REGEX", help="only tests whose name matches")
    test.add_argument("--data", action="append", default=[], metavar="FILE", help=_DATA_HELP)
    test.add_argument("--coverage", action="store_true", help="report coverage per policy file")
    test.add_argument("--format", choices=["text", "json"], default="text")
    test.add_argument("-q", "--quiet", action="store_true", help="list failing tests only")
    test.set_defaults(func=cmd_test)

    fmt = subparsers.add_parser("fmt", help="format .rego files in the canonical layout")
    fmt.add_argument(
        "paths", nargs="+", metavar="PATH", help="files, directories (recursive), or - for stdin"
    )
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if any would")
    fmt.add_argument("--diff", action="store_true", help="print the changes as a diff")
    fmt.set_defaults(func=cmd_fmt)

    prop = subparsers.add_parser("prop", help="search inputs that break prop_* invariants")
    prop.add_argument("paths", nargs="+", metavar="PATH")
    prop.add_argument("--input-schema", default="schemas/input.schema.json", metavar="FILE")
    prop.add_argument("--max-examples", type=int, default=500, metavar="N")
    prop.add_argument("--seed", type=int, default=None, metavar="S")
    prop.add_argument("--data", action="append", default=[], metavar="FILE", help=_DATA_HELP)
    prop.add_argument("--database", default=".hypothesis/policy-engine", metavar="DIR",
                      help="where failing examples are saved and replayed from")  # fmt: skip
    prop.add_argument("--run", metavar="REGEX", help="only properties whose name matches")
    prop.set_defaults(func=cmd_prop)

    bench = subparsers.add_parser("bench", help="time a prepared query per decision")
    bench.add_argument("paths", nargs="+", metavar="PATH")
    bench.add_argument("-i", "--input", required=True, metavar="FILE", help="input JSON/YAML")
    bench.add_argument("query", metavar="QUERY", help="a reference, e.g. data.gateway.decision")
    bench.add_argument("--data", action="append", default=[], metavar="FILE", help=_DATA_HELP)
    bench.add_argument("--count", type=int, default=2000, metavar="N", help="timed evaluations")
    bench.add_argument("--format", choices=["text", "json"], default="text")
    bench.set_defaults(func=cmd_bench)


def add_explain_option(parser: argparse.ArgumentParser) -> None:
    """`--explain full|notes|fails` for the `eval` subcommand."""
    parser.add_argument(
        "--explain", choices=EXPLAIN_MODES, default=None, help="trace the evaluation"
    )


def run_explain(
    paths: Sequence[str], data_specs: Sequence[str], input_file: str | None, query: str, mode: str
) -> int:
    """`eval --explain`: print the trace of a query and its verdict; 1 on errors."""
    try:
        policies = load_policy_set(paths, data_specs)
        explainer = Explainer.from_sources(policies.sources, policies.data)
        document = read_document(input_file) if input_file else UNDEFINED
        explanation = explainer.explain(query, document)
    except PolicyError as exc:
        sys.stderr.write(exc.render() + "\n")
        return 1
    except EvalError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(render_explanation(explanation, mode))
    return 0


def _fail(exc: PolicyError, out: TextIO) -> int:
    out.write(exc.render() + "\n")
    return 2


def cmd_test(args: argparse.Namespace) -> int:
    try:
        policies = load_policy_set(args.paths, args.data)
        cases = [
            c for f in find_yaml_tests([Path(p) for p in args.paths]) for c in load_yaml_tests(f)
        ]
        report = run_tests(policies, cases, args.run, args.coverage)
    except PolicyError as exc:
        return _fail(exc, sys.stderr)
    if args.format == "json":
        payload = {
            "passed": report.passed,
            "failed": report.failed,
            "results": [msgspec.to_builtins(r) for r in report.results],
            "coverage": json.loads(render_json(report.coverage)) if report.coverage else None,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(render_results(report, verbose=not args.quiet))
        if report.coverage is not None:
            sys.stdout.write("\n" + render_text(report.coverage))
    return 1 if report.failed or not report.results else 0


def _rego_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        files += sorted(path.rglob("*.rego")) if path.is_dir() else [path]
    return files


def _fmt_stdin(args: argparse.Namespace) -> int:
    """`fmt -`: standard input to standard output (for editors)."""
    text = sys.stdin.read()
    try:
        formatted = format_text(text, "<stdin>")
    except PolicyError as exc:
        return _fail(exc, sys.stderr)
    if args.check:
        return 0 if formatted == text else 1
    sys.stdout.write(formatted)
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    if args.paths == ["-"]:
        return _fmt_stdin(args)
    changed = 0
    for file in _rego_files(args.paths):
        try:
            text = file.read_text(encoding="utf-8")
            formatted = format_text(text, str(file))
        except PolicyError as exc:
            return _fail(exc, sys.stderr)
        except OSError as exc:
            sys.stderr.write(f"{file}: cannot read: {exc}\n")
            return 2
        if formatted == text:
            continue
        changed += 1
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(keepends=True),
                    formatted.splitlines(keepends=True),
                    f"{file} (original)",
                    f"{file} (formatted)",
                )
            )
        if args.check:
            sys.stdout.write(f"{file}: not formatted\n")
        elif not args.diff:
            file.write_text(formatted, encoding="utf-8")
            sys.stdout.write(f"{file}: formatted\n")
    return 1 if changed and (args.check or args.diff) else 0


def cmd_prop(args: argparse.Namespace) -> int:
    from policy_engine.tooling.props import PropConfig, render_prop_report, run_properties

    try:
        policies = load_policy_set(args.paths, args.data)
        schema = read_document(args.input_schema)
        config = PropConfig(
            max_examples=args.max_examples,
            seed=args.seed,
            database=args.database,
            pattern=args.run,
        )
        report = run_properties(policies, schema, config)
    except PolicyError as exc:
        return _fail(exc, sys.stderr)
    sys.stdout.write(render_prop_report(report))
    return 1 if report.failures or not report.properties else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from policy_engine.tooling.bench import render_bench, run_bench

    try:
        policies = load_policy_set(args.paths, args.data)
        document = read_document(args.input)
        result = run_bench(policies, args.query, document, args.count)
    except PolicyError as exc:
        return _fail(exc, sys.stderr)
    sys.stdout.write(render_bench(result, args.format))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m policy_engine.tooling SUBCOMMAND …` (the same as `policy-engine`)."""
    parser = argparse.ArgumentParser(prog="policy-engine")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status
