"""A tracing build of the engine, for `--explain` and `--coverage`.

`TracingCompiler` is the normal closure compiler with its seams wrapped
(statements, rule clauses, rule definitions, functions): each wrapper records
a `TraceEvent` into the compiler's `Tracer`. Only engines built by
`traced_engine` use it, so the normal compiled path pays nothing for tracing.

A tracing engine evaluates one request at a time (`Tracer.run` takes a lock
and hands back the events of that evaluation).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgspec

from policy_engine import ast
from policy_engine.check import check_modules, check_types_stage
from policy_engine.compile import Builder, Compiler, FuncFn, RuleFn
from policy_engine.engine import Engine, EngineConfig, _parse_all
from policy_engine.errors import PolicyError
from policy_engine.index import RuleGroup
from policy_engine.runtime import MISSING, Cont, Ctx, Frame, Step
from policy_engine.source import Span
from policy_engine.terms import Scope
from policy_engine.values import UNDEFINED, from_json, to_json_text

__all__ = ["TraceEvent", "Tracer", "TracingCompiler", "traced_engine"]

_VALUE_CHARS = 240
"""Longest value text kept in an event; traces stay readable with big documents."""


class TraceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step of an evaluation.

    `op` is `enter` (a rule, clause or function is tried), `exit` (it produced
    a value), `fail` (a clause or statement produced nothing), `eval` (a
    statement succeeded). `kind` is `rule`, `clause`, `function`, `default`
    or `expr`.
    """

    op: str
    kind: str
    name: str
    """`data.pkg.rule` for rules, clauses and functions; empty for statements."""
    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    depth: int
    value: str | None = None
    """The produced value as JSON text (cut at 240 characters)."""


def _value_text(value: Any) -> str | None:
    if value is UNDEFINED or value is MISSING:
        return None
    try:
        text = to_json_text(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


class Tracer:
    """Collects the events of one evaluation at a time."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self.depth = 0
        self._passed: list[bool] = []
        self._lock = threading.Lock()

    @contextmanager
    def run(self) -> Iterator[list[TraceEvent]]:
        """Start a fresh trace; the yielded list fills while the block evaluates."""
        with self._lock:
            self.events, self.depth, self._passed = [], 0, []
            yield self.events

    def record(self, op: str, kind: str, name: str, span: Span, value: Any = MISSING) -> None:
        self.events.append(
            TraceEvent(
                op=op,
                kind=kind,
                name=name,
                file=span.file,
                line=span.line,
                column=span.column,
                end_line=span.end_line,
                end_column=span.end_column,
                depth=self.depth,
                value=_value_text(value),
            )
        )

    # ---- statements: entered, then passed (at least once) or failed ---------------------

    def enter_expr(self, span: Span) -> None:
        self.record("enter", "expr", "", span)
        self._passed.append(False)
        self.depth += 1

    def pass_expr(self, span: Span) -> None:
        if not self._passed[-1]:
            self._passed[-1] = True
            self.depth -= 1
            self.record("eval", "expr", "", span)
            self.depth += 1

    def leave_expr(self, span: Span) -> None:
        self.depth -= 1
        if not self._passed.pop():
            self.record("fail", "expr", "", span)


def _rule_name(module: ast.Module, rule: ast.Rule) -> str:
    return ".".join(("data", *module.package, *rule.name))


class TracingCompiler(Compiler):
    """The closure compiler with every statement, clause and rule reporting to `tracer`."""

    share_static_rules = False  # every evaluation must report every rule it uses

    def __init__(self, index: Any, tracer: Tracer) -> None:
        super().__init__(index)
        self.tracer = tracer
        # Clause nodes of the definitions being compiled, innermost last: the
        # base compiler compiles a rule's clauses in order (body, then elses).
        self._clauses: list[list[tuple[str, ast.CompleteRule | ast.FunctionRule | ast.Else]]] = []
        self._defaulted: dict[tuple[str, ...], FuncFn] = {}

    def constant_rule(self, path: tuple[str, ...]) -> Any:
        """Never inline constant rules: every rule evaluation must show in the trace."""
        return MISSING

    def literal(self, lit: ast.Literal, scope: Scope) -> Builder:
        builder = super().literal(lit, scope)
        if lit.withs:
            return builder  # the base compiles the plain statement through `literal` too
        tracer, span = self.tracer, lit.span
        direct = getattr(builder, "direct", None)
        if direct is not None:
            # A deterministic statement run straight-line: keep that shape.
            def holds(ctx: Ctx, f: Frame) -> bool:
                tracer.enter_expr(span)
                try:
                    ok = bool(direct(ctx, f))
                    if ok:
                        tracer.pass_expr(span)
                    return ok
                finally:
                    tracer.leave_expr(span)

            stmt_type: Any = type(builder)
            rebuilt: Builder = stmt_type(holds)
            return rebuilt

        def build(nxt: Step) -> Step:
            def after(ctx: Ctx, f: Frame, k: Cont) -> bool:
                tracer.pass_expr(span)
                tracer.depth -= 1
                try:
                    return nxt(ctx, f, k)
                finally:
                    tracer.depth += 1

            inner = builder(after)

            def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
                tracer.enter_expr(span)
                try:
                    return inner(ctx, f, k)
                finally:
                    tracer.leave_expr(span)

            return step

        return build

    def definition(self, module: ast.Module, rule: ast.Rule) -> RuleFn:
        name = _rule_name(module, rule)
        if isinstance(rule, ast.CompleteRule):
            self._clauses.append([(name, rule), *((name, e) for e in rule.elses)])
        try:
            compute = super().definition(module, rule)
        finally:
            if isinstance(rule, ast.CompleteRule):
                self._clauses.pop()
        if isinstance(rule, ast.CompleteRule):
            return compute  # its clauses report themselves
        tracer, span = self.tracer, rule.span

        def evaluate(ctx: Ctx) -> Any:
            tracer.record("enter", "rule", name, span)
            tracer.depth += 1
            try:
                value = compute(ctx)
            finally:
                tracer.depth -= 1
            tracer.record("exit", "rule", name, span, value)
            return value

        return evaluate

    def function_definition(self, module: ast.Module, rule: ast.FunctionRule) -> FuncFn:
        name = _rule_name(module, rule)
        self._clauses.append([(name, rule), *((name, e) for e in rule.elses)])
        try:
            call = super().function_definition(module, rule)
        finally:
            self._clauses.pop()
        tracer, span = self.tracer, rule.span

        def evaluate(ctx: Ctx, args: tuple[Any, ...]) -> Any:
            tracer.record("enter", "function", name, span, list(args))
            tracer.depth += 1
            try:
                value = call(ctx, args)
            finally:
                tracer.depth -= 1
            tracer.record(
                "exit" if value is not UNDEFINED else "fail", "function", name, span, value
            )
            return value

        return evaluate

    def clause(self, *args: Any, **kwargs: Any) -> Any:
        run = super().clause(*args, **kwargs)
        pending = self._clauses[-1] if self._clauses else []
        if not pending:
            return run
        name, node = pending.pop(0)
        tracer, clause_span = self.tracer, node.span

        # A clause is either `(ctx, frame) -> value` or a continuation step
        # `(ctx, frame, k) -> stop` that leaves its value in `frame[0]`.
        def traced(ctx: Ctx, f: Frame, *k: Any) -> Any:
            tracer.record("enter", "clause", name, clause_span)
            tracer.depth += 1
            try:
                result = run(ctx, f, *k)
            finally:
                tracer.depth -= 1
            produced = f[0] if k else result
            if produced is MISSING or produced is UNDEFINED:
                tracer.record("fail", "clause", name, clause_span)
            else:
                tracer.record("exit", "clause", name, clause_span, produced)
            return result

        return traced

    def function(self, path: tuple[str, ...]) -> FuncFn:
        """Functions with a `default` report when the default answered."""
        call = super().function(path)
        group = self.index.groups[path]
        default = group.default
        if default is None:
            return call
        wrapped = self._defaulted.get(path)
        if wrapped is not None:
            return wrapped
        tracer, name = self.tracer, ".".join(path)

        def evaluate(ctx: Ctx, args: tuple[Any, ...]) -> Any:
            mark = len(tracer.events)
            value = call(ctx, args)
            if not any(
                e.op == "exit" and e.kind == "clause" and e.name == name
                for e in tracer.events[mark:]
            ):
                tracer.record("exit", "default", name, default.span, value)
            return value

        self._defaulted[path] = evaluate
        return evaluate

    def compute_group(self, group: RuleGroup) -> RuleFn:
        compute = super().compute_group(group)
        default = group.default
        if default is None:
            return compute
        tracer, name = self.tracer, ".".join(group.path)
        definitions = len(group.definitions)

        def evaluate(ctx: Ctx) -> Any:
            mark = len(tracer.events)
            value = compute(ctx)
            produced = any(
                e.op == "exit" and e.kind in ("clause", "rule") and e.name == name
                for e in tracer.events[mark:]
            )
            if not produced or definitions == 0:
                tracer.record("exit", "default", name, default.span, value)
            return value

        return evaluate


def traced_engine(
    sources: Mapping[str, str],
    data: Mapping[str, Any] | None = None,
    config: EngineConfig | None = None,
) -> tuple[Engine, Tracer]:
    """An `Engine` over `sources` whose evaluations report to the returned `Tracer`."""
    modules, problems = _parse_all(sources)
    index, check_problems = check_modules(modules)
    problems += check_problems
    if problems:
        raise PolicyError(problems, sources)
    tracer = Tracer()
    compiler = TracingCompiler(index, tracer)
    for path, group in index.groups.items():
        if group.kind == "function":
            compiler.function(path)
        else:
            compiler.rule(path)
    if compiler.diagnostics:
        raise PolicyError(compiler.diagnostics, sources)
    type_problems = check_types_stage(modules, index)
    if type_problems:
        raise PolicyError(type_problems, sources)
    engine = Engine(index, compiler, from_json(dict(data or {})), config or EngineConfig(), sources)
    return engine, tracer
