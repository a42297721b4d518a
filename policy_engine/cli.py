"""`policy-engine`: check policies and evaluate queries from the command line.

Subcommands are registered by modules: this one adds `check` and `eval`; each
module named in `EXTENSIONS` (imported only if present) adds its own through a
`register(subparsers)` function. Exit status: 0 success, 1 the policies or the
evaluation failed (errors on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import yaml

from policy_engine import ast
from policy_engine.engine import Engine
from policy_engine.errors import EvalError, PolicyError
from policy_engine.parser import parse_query
from policy_engine.runtime import EvalOptions
from policy_engine.tooling.loading import load_policy_set
from policy_engine.typecheck import parse_input_schema
from policy_engine.values import to_json_text

__all__ = ["EXTENSIONS", "build_parser", "main"]

EXTENSIONS = ("policy_engine.tooling.cli",)
"""Modules that add subcommands (test, fmt, prop, bench…) with `register(subparsers)`."""


def _extension(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None  # not installed in this tree
        raise


def read_document(path: str) -> Any:
    """A JSON or YAML file (by extension) as policy values; JSON numbers stay exact."""
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        return yaml.safe_load(text)
    return json.loads(text, parse_float=Decimal)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        schema = (
            parse_input_schema(Path(args.schema).read_text(encoding="utf-8"), args.schema)
            if args.schema
            else None
        )
        engine = Engine.from_paths(args.paths, input_schema=schema)
    except PolicyError as exc:
        sys.stderr.write(exc.render() + "\n")
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"cannot read the input schema: {exc}\n")
        return 1
    sys.stdout.write(f"ok: {len(engine.rule_paths)} rules\n")
    return 0


# The binding that carries the value of a query without variables (`eval data.p`).
_VALUE_NAME = "value__"


def _value_query(query: str) -> str | None:
    """`value__ = (QUERY)` when QUERY is one plain term (its value is the answer), else None."""
    try:
        literals = parse_query(query)
    except PolicyError:
        return None  # reported when the query itself is compiled
    if len(literals) != 1:
        return None
    (literal,) = literals
    statement = (ast.Assign, ast.Unify, ast.SomeVars, ast.SomeIn, ast.Every)
    if literal.negated or literal.withs or isinstance(literal.expr, statement):
        return None
    return f"{_VALUE_NAME} = ({query})"


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a query with the documents the proxy loads (policies, catalog, `--data`).

    A query that is a single term prints that term's value (OPA's `eval data.p`);
    a query with variables prints its result set, one object of bindings per solution.
    """
    if getattr(args, "explain", None):
        tooling = _extension(EXTENSIONS[0])
        assert tooling is not None
        status: int = tooling.run_explain(
            args.data_paths, args.data, args.input, args.query, args.explain
        )
        return status
    try:
        policies = load_policy_set(args.data_paths, args.data)
        document = read_document(args.input) if args.input else None
        engine = Engine.from_sources(policies.sources, data=policies.data)
        # One clock reading for the whole command; the print(...) lines of the query whose
        # answer is shown go to stderr, as in `opa eval`.
        now = time.time_ns()
        printed: list[str] = []
        options = EvalOptions(now_ns=now, print_hook=printed.append)
        rows = engine.query(args.query, input=document, options=options)
        value_query = _value_query(args.query) if all(not row for row in rows) else None
        if value_query is not None:
            printed.clear()
            rows_of_value = engine.query(value_query, input=document, options=options)
            _print_lines(printed)
            values = [row[_VALUE_NAME] for row in rows_of_value]
            if not values:
                sys.stderr.write(f"undefined: `{args.query}` has no value\n")
                return 0
            return _print(values[0] if len(values) == 1 else values, args.format)
    except (PolicyError, EvalError) as exc:
        sys.stderr.write((exc.render() if isinstance(exc, PolicyError) else str(exc)) + "\n")
        return 1
    except (OSError, ValueError, yaml.YAMLError) as exc:
        sys.stderr.write(f"cannot read a document: {exc}\n")
        return 1
    _print_lines(printed)
    return _print(rows, args.format)


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        sys.stderr.write(line + "\n")


def _print(value: Any, output_format: str) -> int:
    text = to_json_text(value)
    if output_format == "pretty":
        text = msgspec.json.format(text, indent=2)
    sys.stdout.write(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policy-engine", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)

    check = subparsers.add_parser("check", help="parse, check and compile policies")
    check.add_argument(
        "paths", nargs="+", metavar="PATH", help=".rego/.iam.yaml files or directories"
    )
    check.add_argument(
        "--schema",
        metavar="FILE",
        help="a JSON Schema of the input document: every input.… reference is type-checked "
        "against it (as `opa check --schema`), e.g. schemas/input.schema.json",
    )
    check.set_defaults(func=cmd_check)

    evaluate = subparsers.add_parser("eval", help="evaluate a query against policies")
    evaluate.add_argument(
        "-d", "--policies", dest="data_paths", action="append", required=True, metavar="PATH",
        help="a policy file or directory (repeatable)",
    )  # fmt: skip
    evaluate.add_argument("-i", "--input", metavar="FILE", help="the input document (JSON or YAML)")
    evaluate.add_argument(
        "--data", action="append", default=[], metavar="[NAME=]FILE",
        help="a JSON/YAML file merged into `data`, or NAME=FILE to place it at `data.NAME` "
        "(repeatable; a catalog.yaml in a policy directory is loaded as data.catalog)",
    )  # fmt: skip
    evaluate.add_argument("--format", choices=["pretty", "json"], default="json")
    evaluate.add_argument(
        "query",
        metavar="QUERY",
        help='e.g. "data.gateway.decision" (prints its value) or "data.p[k] = x" (bindings)',
    )
    evaluate.set_defaults(func=cmd_eval)

    for name in EXTENSIONS:
        module = _extension(name)
        if module is None:
            continue
        if hasattr(module, "add_explain_option"):
            module.add_explain_option(evaluate)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
