"""`policy-engine test`: run `test_*` rules and YAML cases, optionally with coverage.

A Rego test is a rule whose name starts with `test_`; it passes when it is
defined and not `false`. Tests run without `input`; they set what they need
with `with input as …` and `with data.… as …`. A failing test is run again
through the tracing engine to name the first statement of its body that
failed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from policy_engine import ast
from policy_engine.engine import Engine, _parse_all
from policy_engine.errors import EvalError, PolicyError
from policy_engine.runtime import EvalOptions
from policy_engine.source import source_lines
from policy_engine.tooling.coverage import FileCoverage, coverage_of
from policy_engine.tooling.explain import Explainer
from policy_engine.tooling.loading import PolicySet
from policy_engine.tooling.trace import TraceEvent, traced_engine
from policy_engine.tooling.yaml_tests import YamlCase, matches
from policy_engine.values import UNDEFINED, to_json_text

__all__ = ["TestOutcome", "TestReport", "discover_tests", "render_results", "run_tests"]


class TestOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one test."""

    name: str
    file: str
    line: int
    outcome: str
    """`pass`, `fail` or `error`."""
    detail: str = ""
    """Why it failed, with a location."""
    duration_ms: float = 0.0


class TestReport(msgspec.Struct, frozen=True, kw_only=True):
    results: tuple[TestOutcome, ...]
    coverage: tuple[FileCoverage, ...] | None = None

    @property
    def passed(self) -> int:
        return sum(r.outcome == "pass" for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed


class _RegoTest(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    file: str
    line: int


def discover_tests(modules: Sequence[ast.Module]) -> list[_RegoTest]:
    """Every rule named `test_*`, once per path, in file and line order."""
    seen: dict[str, _RegoTest] = {}
    for module in modules:
        for rule in module.rules:
            if isinstance(rule, ast.CompleteRule) and rule.name[-1].startswith("test_"):
                name = ".".join(("data", *module.package, *rule.name))
                seen.setdefault(
                    name, _RegoTest(name=name, file=rule.span.file, line=rule.span.line)
                )
    return sorted(seen.values(), key=lambda t: (t.file, t.line))


def run_tests(
    policies: PolicySet,
    yaml_cases: Sequence[YamlCase] = (),
    pattern: str | None = None,
    coverage: bool = False,
) -> TestReport:
    """Run the selected tests; with `coverage`, through the tracing engine."""
    modules, problems = _parse_all(policies.sources)
    if problems:
        raise PolicyError(problems, policies.sources)
    selected = re.compile(pattern) if pattern else None
    tests = [t for t in discover_tests(modules) if selected is None or selected.search(t.name)]
    cases = [c for c in yaml_cases if selected is None or selected.search(c.name)]
    events: list[TraceEvent] = []
    if coverage:
        engine, tracer = traced_engine(policies.sources, policies.data)

        def run(fn: Callable[[], Any]) -> Any:
            with tracer.run() as trace:
                try:
                    return fn()
                finally:
                    events.extend(trace)

    else:
        engine = Engine.from_sources(policies.sources, policies.data)

        def run(fn: Callable[[], Any]) -> Any:
            return fn()

    explainer: list[Explainer] = []  # built on the first failure only
    results = [_rego_test(engine, t, run, policies, explainer) for t in tests]
    results += [_yaml_case(engine, c, run) for c in cases]
    report = coverage_of(modules, events) if coverage else None
    tooling_files = _tooling_files(modules)
    tested = [fc for fc in report or () if fc.file not in tooling_files]
    return TestReport(results=tuple(results), coverage=tuple(tested) if coverage else None)


def _tooling_files(modules: Sequence[ast.Module]) -> set[str]:
    """Files holding tests or properties: not reported in coverage."""
    return {
        module.span.file
        for module in modules
        for rule in module.rules
        if rule.name[-1].startswith(("test_", "prop_")) or module.span.file.endswith("_test.rego")
    }


def _rego_test(
    engine: Engine,
    test: _RegoTest,
    run: Callable[[Callable[[], Any]], Any],
    policies: PolicySet,
    explainer: list[Explainer],
) -> TestOutcome:
    started = time.perf_counter()
    printed: list[str] = []
    options = _options(printed)
    try:
        prepared = engine.prepare(test.name)
        value = run(lambda: prepared(UNDEFINED, None, options))
    except EvalError as exc:
        detail = _with_prints(str(exc), printed)
        return _outcome(test.name, test.file, test.line, "error", detail, started)
    if value is not UNDEFINED and value is not False:
        detail = _with_prints("", printed)
        return _outcome(test.name, test.file, test.line, "pass", detail, started)
    if not explainer:
        explainer.append(Explainer.from_sources(policies.sources, policies.data))
    detail = _with_prints(_why_failed(explainer[0], test.name, value), printed)
    return _outcome(test.name, test.file, test.line, "fail", detail, started)


def _options(printed: list[str]) -> EvalOptions:
    """Each test reads the clock once (time.now_ns) and keeps what it prints."""
    return EvalOptions(now_ns=time.time_ns(), print_hook=printed.append)


def _with_prints(detail: str, printed: list[str]) -> str:
    return "\n".join([*([detail] if detail else []), *(f"print: {line}" for line in printed)])


def _why_failed(explainer: Explainer, name: str, value: Any) -> str:
    if value is False:
        return "the test produced false"
    explanation = explainer.explain(name, UNDEFINED)
    lines = explanation.texts
    for event in explanation.events:
        if event.op == "fail" and event.kind == "expr" and event.depth == 1:
            text = source_lines(lines.get(event.file, ""), event.file)
            source = text[event.line - 1].strip() if 0 < event.line <= len(text) else ""
            return f"{event.file}:{event.line}: failed: {source}"
    return "the test is undefined"


def _yaml_case(
    engine: Engine, case: YamlCase, run: Callable[[Callable[[], Any]], Any]
) -> TestOutcome:
    started = time.perf_counter()
    printed: list[str] = []
    options = _options(printed)
    try:
        prepared = engine.prepare(case.query)
        value = run(lambda: prepared(case.input, None, options))
    except (EvalError, PolicyError) as exc:
        detail = _with_prints(str(exc), printed)
        return _outcome(case.name, case.file, case.line, "error", detail, started)
    if value is not UNDEFINED and matches(value, case.want):
        detail = _with_prints("", printed)
        return _outcome(case.name, case.file, case.line, "pass", detail, started)
    got = "undefined" if value is UNDEFINED else to_json_text(value)
    detail = f"{case.file}:{case.line}: want {to_json_text(case.want)}, got {got}"
    return _outcome(case.name, case.file, case.line, "fail", _with_prints(detail, printed), started)


def _outcome(
    name: str, file: str, line: int, outcome: str, detail: str, started: float
) -> TestOutcome:
    elapsed = (time.perf_counter() - started) * 1000
    return TestOutcome(
        name=name,
        file=file,
        line=line,
        outcome=outcome,
        detail=detail,
        duration_ms=round(elapsed, 3),
    )


def render_results(report: TestReport, verbose: bool = True) -> str:
    """One line per test (`file:line: PASS name`), details of failures, the summary line."""
    lines: list[str] = []
    for r in report.results:
        if verbose or r.outcome != "pass":
            lines.append(
                f"{r.file}:{r.line}: {r.outcome.upper()} {r.name} ({r.duration_ms:.1f} ms)"
            )
        if r.detail and (verbose or r.outcome != "pass"):
            lines += [f"    {line}" for line in r.detail.splitlines()]
    if not report.results:
        lines.append("no tests found")
    lines.append(f"{report.passed} passed, {report.failed} failed")
    return "\n".join(lines) + "\n"
