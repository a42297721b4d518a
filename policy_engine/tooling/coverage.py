"""Coverage of policy files from traced evaluations (`policy-engine test --coverage`).

Two measures per file, like `opa test --coverage` but naming rule bodies:

- rule bodies: every clause (a rule's body, each `else`, each partial rule,
  each function definition, each `default`) is covered once it was tried;
- lines: a line is covered when a statement or clause head on it was
  evaluated, not covered when it holds one that never was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

from policy_engine import ast
from policy_engine.tooling.trace import TraceEvent

__all__ = ["Body", "FileCoverage", "coverage_of", "render_json", "render_text"]


class Body(msgspec.Struct, frozen=True, kw_only=True):
    """One rule body (clause) of a policy file."""

    rule: str
    line: int
    covered: bool


class FileCoverage(msgspec.Struct, frozen=True, kw_only=True):
    file: str
    bodies: tuple[Body, ...]
    covered_lines: tuple[int, ...]
    not_covered_lines: tuple[int, ...]

    @property
    def body_percent(self) -> float:
        return _percent(sum(b.covered for b in self.bodies), len(self.bodies))

    @property
    def line_percent(self) -> float:
        covered = len(self.covered_lines)
        return _percent(covered, covered + len(self.not_covered_lines))


def _percent(part: int, whole: int) -> float:
    return 100.0 if whole == 0 else round(100.0 * part / whole, 2)


def _clauses(module: ast.Module) -> Iterator[tuple[str, ast.Rule | ast.Else, str]]:
    """(rule path, clause node, how it shows in the trace) for every clause."""
    for rule in module.rules:
        name = ".".join(("data", *module.package, *rule.name))
        if isinstance(rule, ast.CompleteRule | ast.FunctionRule):
            yield name, rule, "clause"
            for clause in rule.elses:
                yield name, clause, "clause"
        elif isinstance(rule, ast.DefaultRule):
            yield name, rule, "default"
        else:
            yield name, rule, "rule"


def _literals(node: Any) -> Iterator[ast.Literal]:
    if isinstance(node, ast.Literal):
        yield node
    if isinstance(node, msgspec.Struct):
        for field in node.__struct_fields__:
            yield from _literals(getattr(node, field))
    elif isinstance(node, tuple):
        for item in node:
            yield from _literals(item)


def coverage_of(modules: Iterable[ast.Module], events: Iterable[TraceEvent]) -> list[FileCoverage]:
    """Coverage of each module's file given every event of the traced runs."""
    entered: set[tuple[str, int, int, str]] = set()
    for e in events:
        if e.op in ("enter", "exit") or (e.kind == "default" and e.op == "exit"):
            entered.add((e.file, e.line, e.column, e.kind))
    by_file: dict[str, list[ast.Module]] = {}
    for module in modules:
        by_file.setdefault(module.span.file, []).append(module)
    return [_file_coverage(file, group, entered) for file, group in sorted(by_file.items())]


def _file_coverage(
    file: str, modules: list[ast.Module], entered: set[tuple[str, int, int, str]]
) -> FileCoverage:
    bodies: list[Body] = []
    covered: set[int] = set()
    missed: set[int] = set()
    for module in modules:
        for name, node, kind in _clauses(module):
            hit = (file, node.span.line, node.span.column, kind) in entered
            bodies.append(Body(rule=name, line=node.span.line, covered=hit))
            (covered if hit else missed).add(node.span.line)
        for lit in _literals(module.rules):
            hit = (file, lit.span.line, lit.span.column, "expr") in entered
            (covered if hit else missed).add(lit.span.line)
    return FileCoverage(
        file=file,
        bodies=tuple(sorted(bodies, key=lambda b: b.line)),
        covered_lines=tuple(sorted(covered)),
        not_covered_lines=tuple(sorted(missed - covered)),
    )


def _ranges(lines: Iterable[int]) -> str:
    out: list[str] = []
    numbers = sorted(lines)
    start = previous = None
    for n in [*numbers, None]:
        if n is not None and previous is not None and n == previous + 1:
            previous = n
            continue
        if start is not None:
            out.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = n
    return ", ".join(out)


def render_text(report: Iterable[FileCoverage]) -> str:
    lines: list[str] = []
    report = list(report)
    if not report:
        return "coverage: no policy files besides the tests\n"
    for fc in report:
        covered = sum(b.covered for b in fc.bodies)
        lines.append(
            f"{fc.file}: rule bodies {covered}/{len(fc.bodies)} ({fc.body_percent:.1f}%), "
            f"lines {len(fc.covered_lines)}/{len(fc.covered_lines) + len(fc.not_covered_lines)}"
            f" ({fc.line_percent:.1f}%)"
        )
        for body in fc.bodies:
            if not body.covered:
                lines.append(f"  {fc.file}:{body.line}: rule body of {body.rule} never evaluated")
        if fc.not_covered_lines:
            lines.append(f"  not covered lines: {_ranges(fc.not_covered_lines)}")
    return "\n".join(lines) + "\n"


def render_json(report: Iterable[FileCoverage]) -> str:
    files: dict[str, Mapping[str, Any]] = {}
    for fc in report:
        files[fc.file] = {
            "rule_bodies": {
                "covered": sum(b.covered for b in fc.bodies),
                "total": len(fc.bodies),
                "percent": fc.body_percent,
                "not_covered": [
                    {"rule": b.rule, "line": b.line} for b in fc.bodies if not b.covered
                ],
            },
            "lines": {
                "covered": list(fc.covered_lines),
                "not_covered": list(fc.not_covered_lines),
                "percent": fc.line_percent,
            },
        }
    return msgspec.json.format(msgspec.json.encode({"files": files}), indent=2).decode() + "\n"
