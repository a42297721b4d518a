"""Checked AST -> nested Python closures, specialised ahead of time.

Everything that can be decided before a request is decided here: which
variable lives in which frame slot, the order statements run in (OPA's
safety reordering), which `data` paths are rules (direct calls to their
memoised evaluators) and which are base data (a fixed key walk), which name
is a built-in. Per request, only closures run; nothing walks the AST.

Shapes (see `runtime`): a value is `ValueFn(ctx, frame)`; a statement is a
builder `Step -> Step` so that the statement after it is known when the
closure is made; a pattern is `Matcher(ctx, frame, value) -> bool` that binds
slots. A tracing variant can wrap builders and rule evaluators at these seams.

Layers, each a module: `steps` (statement building blocks), `codegen`
(generated call sites and paths), `compile_terms.TermCompiler` (values,
patterns, calls), `compile_body.BodyCompiler` (statements and their order),
and here `Compiler` (rules, functions, packages, queries).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from policy_engine import ast
from policy_engine.builtins import BuiltinError
from policy_engine.builtins.regex_glob import compile_glob
from policy_engine.codegen import generate, inline_body
from policy_engine.compile_body import BodyCompiler
from policy_engine.compile_terms import ClauseShape
from policy_engine.errors import COMPILE_ERROR, CONFLICT_ERROR, EvalError
from policy_engine.index import RuleGroup
from policy_engine.runtime import (
    COLLECTIONS,
    MISSING,
    Cont,
    Ctx,
    Frame,
    Step,
    ValueFn,
    index_value,
    iterate,
)
from policy_engine.source import Span
from policy_engine.steps import (
    NOOP,
    Builder,
    ClauseFn,
    FuncFn,
    IterStmt,
    RuleFn,
    Stmt,
    always,
    chain,
    constant,
    direct_body,
    go_on,
    sequence,
)
from policy_engine.terms import Layout, NotReady, Scope, term_vars
from policy_engine.values import UNDEFINED, FrozenDict, equal, freeze

__all__ = ["Builder", "ClauseFn", "CompiledQuery", "Compiler", "FuncFn", "RuleFn"]

# Statements of one clause nest one level each in generated code; longer bodies
# run as one condition call (Python allows at most 100 levels of indentation).
_MOST_INLINE_STATEMENTS = 24
_NO_SLOTS = (None,)

# A rule read by a bare reference runs inline at the reference, when it is at most
# this many generated lines and this many references deep (code size stays linear).
_MOST_INLINE_LINES = 40
_MOST_INLINE_DEPTH = 2

# Value types whose Python equality and hashing are Rego's equality.
_HASHED_AS_IN_REGO = frozenset({str, int, type(None)})


class CompiledQuery:
    """A compiled query body and the slots of its user-visible variables."""

    def __init__(self, step: Step, layout: Layout, outputs: dict[str, int]) -> None:
        self.step = step
        self.size = layout.size
        self.outputs = outputs


class Compiler(BodyCompiler):
    """Compiles rules on demand (dependencies first) into evaluator closures."""

    # ---- rules ---------------------------------------------------------------------------

    # Whether rules that read no `input` keep their values across evaluations
    # (`Ctx.shared`); a tracing compiler turns it off to see every evaluation.
    share_static_rules = True

    def rule(self, path: tuple[str, ...]) -> RuleFn:
        """The memoised evaluator of the rule group at `path` (compiled on first use)."""
        found = self._rules.get(path)
        if found is not None:
            self.note_dependency(path)
            return found
        group = self.index.groups[path]
        self._ids += 1
        rule_id = self._ids
        self._reading_input.append(False)
        try:
            compute = self.compute_group(group)
        finally:
            self._reads_input[path] = self._reading_input.pop()
        self.note_dependency(path)
        shared = self.share_static_rules and not self._reads_input[path]
        if self.replaceable(path):
            evaluate = self.memoised(path, rule_id, compute, shared)
        else:
            # Generated call sites read the cache themselves and on a miss call `fill`,
            # which computes and caches without looking in the cache again.
            cache = "shared" if shared else "cache"
            fill = self.rule_source(rule_id, compute, cache, check=False)
            self._fill_computes[fill] = compute
            evaluate = self.cached(rule_id, fill, cache)
            self._known[id(evaluate)] = ("rule", (cache, rule_id, fill), evaluate)
        self._rules[path] = evaluate
        return evaluate

    def memoised(
        self, path: tuple[str, ...], rule_id: int, compute: RuleFn, shared: bool
    ) -> RuleFn:
        """`compute` behind the rule cache, as generated straight-line code.

        The `with` override check is left out when no policy replaces rules, and a
        rule that reads no `input` is kept in the engine-wide `ctx.shared`.
        """
        cache = "shared" if shared else "cache"
        return self.rule_source(
            rule_id, compute, cache, check=True, path=path if self.replaceable(path) else None
        )

    def cached(self, rule_id: int, fill: RuleFn, cache: str) -> RuleFn:
        """The rule's cached value, else `fill`'s (it computes and caches)."""
        source = (
            "def get(ctx, _frame=None):\n"
            f"    value = ctx.{cache}.get(rid, M)\n"
            "    if value is M:\n"
            "        value = fill(ctx)\n"
            "    return value\n"
        )
        evaluate: RuleFn = generate(
            source, {"M": MISSING, "rid": rule_id, "fill": fill}, self._code_cache
        )
        return evaluate

    def rule_source(
        self,
        rule_id: int,
        compute: RuleFn,
        cache: str,
        check: bool,
        path: tuple[str, ...] | None = None,
    ) -> RuleFn:
        """A rule's evaluator as generated code: with `check`, the cached value when
        there is one; with `path`, a `with` replacement first. A rule of straight-line
        clauses runs inline (see `group_lines`); others call `compute`."""
        env: dict[str, Any] = {"M": MISSING, "U": UNDEFINED, "rid": rule_id, "path": path}
        env["compute"] = compute
        lines = ["def get(ctx, _frame=None):"]
        if path is not None:
            lines.append("    if ctx.overrides is not None and path in ctx.overrides:")
            lines.append("        return ctx.overrides[path]")
        lines.append(f"    cache = ctx.{cache}")
        indent = "    "
        if check:
            lines.append("    value = cache.get(rid, M)")
            lines.append("    if value is M:")
            indent = "        "
        body = self.group_lines(compute, env)
        if body is None:
            single = self._single_clauses.get(compute)
            if single is not None:
                env["clause"], env["size"] = single
                body = ["value = clause(ctx, [None] * size)"]
            else:
                body = ["value = compute(ctx)"]
        lines.extend(indent + line for line in body)
        lines.append(indent + "cache[rid] = value")
        lines.append("    return value")
        evaluate: RuleFn = generate("\n".join(lines) + "\n", env, self._code_cache)
        return evaluate

    def group_lines(
        self,
        compute: RuleFn,
        env: dict[str, Any],
        name: str = "",
        target: str = "value",
        frame: str = "f",
        depth: int = 0,
    ) -> list[str] | None:
        """Statements setting `target` to a complete rule's value (None unless every
        clause of every definition is straight-line, see `_group_shapes`). Names in
        `env` and locals start with `name`, so rules can be inlined into each other."""
        shape = self._group_shapes.get(compute)
        if shape is None:
            return None
        definitions, default, conflict = shape
        env["U"], env["M"], env["equal"], env[f"{name}conflict"] = (
            UNDEFINED,
            MISSING,
            equal,
            conflict,
        )
        lines = [f"{target} = U"]  # no definitions: only a default
        for i, (clauses, size) in enumerate(definitions):
            env[f"{name}size{i}"] = size
            if size > 1:
                lines.append(f"{frame} = [None] * {name}size{i}")
            else:
                # No variables: nothing reads or writes a slot (slot 0 only collects
                # the values of clauses that enumerate), so one immutable frame will do.
                env["NO_SLOTS"] = _NO_SLOTS
                lines.append(f"{frame} = NO_SLOTS")
            found = target if i == 0 else f"{name}v"
            lines.extend(self.chain_lines(clauses, f"{name}d{i}", env, found, frame, depth))
            if i:
                lines.append(f"if {found} is not U:")
                lines.append(f"    if {target} is U:")
                lines.append(f"        {target} = {found}")
                lines.append(f"    elif not equal({target}, {found}):")
                lines.append(f"        {name}conflict()")
        if default is not MISSING:
            env[f"{name}default"] = default
            lines.append(f"if {target} is U:")
            lines.append(f"    {target} = {name}default")
        return lines

    def chain_lines(
        self,
        shapes: list[ClauseShape],
        name: str,
        env: dict[str, Any],
        target: str,
        frame: str = "f",
        depth: int = 0,
    ) -> list[str]:
        """Statements setting `target` to the first defined value of an `else` chain of
        straight-line clauses, run in `frame` (their parts go in `env`)."""
        env["U"], env["M"] = UNDEFINED, MISSING
        lines: list[str] = []
        for j, shape in enumerate(shapes):
            clause = self.clause_lines(shape, f"{name}c{j}", env, target, frame, depth)
            if j == 0:
                lines.extend(clause)
            else:
                lines.append(f"if {target} is U:")
                lines.extend("    " + line for line in clause)
        return lines

    def clause_lines(
        self,
        shape: ClauseShape,
        name: str,
        env: dict[str, Any],
        target: str,
        frame: str = "f",
        depth: int = 0,
    ) -> list[str]:
        """Statements setting `target` to a straight-line clause's value (U when its
        body fails): each statement is a test nesting the rest; bare rule references
        read the rule cache inline."""
        direct, kind, head, parts = shape
        env[f"{name}h"] = head
        value = f"{name}h" if kind == "const" else f"{name}h(ctx, {frame})"
        if len(parts) > _MOST_INLINE_STATEMENTS:
            parts = [direct]
        lines = [f"{target} = U"] if parts else []
        indent = ""
        for k, part in enumerate(parts):
            setup, holds = self.test_source(part, f"{name}p{k}", env, frame, depth)
            lines.extend(indent + line for line in setup)
            lines.append(f"{indent}if {holds}:")
            indent += "    "
        inlined = self._value_sources.get(head) if kind == "value" else None
        head_lines = None
        if inlined is not None and inlined[0].count("\n") <= _MOST_INLINE_LINES:
            source, head_env = inlined
            head_lines = inline_body(
                source, head_env, f"{name}h_", frame, target, env, self._inlined_sources
            )
        if head_lines is not None:
            lines.extend(indent + line for line in head_lines)
        else:
            lines.append(f"{indent}{target} = {value}")
        return lines

    def test_source(
        self, test: Any, name: str, env: dict[str, Any], frame: str = "f", depth: int = 0
    ) -> tuple[list[str], str]:
        """Statements and an expression for whether statement `test` holds in `frame`.

        A bare rule reference reads the rule cache inline (into `{name}t`); on a miss
        a small rule of straight-line clauses runs inline too (a few levels deep),
        others through their `fill` function.
        """
        rule_test = self._rule_tests.get(test)
        inlined = self._test_sources.get(test)
        if inlined is not None and inlined[0].count("\n") <= _MOST_INLINE_LINES:
            source, test_env = inlined
            lines = inline_body(
                source, test_env, f"{name}_", frame, name, env, self._inlined_sources
            )
            if lines is not None:
                return lines, name
        if rule_test is None:
            env[name] = test
            return [], f"{name}(ctx, {frame})"
        fill, cache, rule_id, negated = rule_test
        env[name], env[f"{name}r"] = fill, rule_id
        value = f"{name}t"
        setup = [f"{value} = ctx.{cache}.get({name}r, M)", f"if {value} is M:"]
        inner = None
        compute = self._fill_computes.get(fill)
        if compute is not None and depth < _MOST_INLINE_DEPTH:
            inner = self.group_lines(compute, env, f"{name}_", value, f"{name}f", depth + 1)
        if inner is not None and len(inner) <= _MOST_INLINE_LINES:
            setup.extend("    " + line for line in inner)
            setup.append(f"    ctx.{cache}[{name}r] = {value}")
        else:
            setup.append(f"    {value} = {name}(ctx)")
        if negated:
            return setup, f"{value} is U or {value} is False"
        return setup, f"{value} is not U and {value} is not False"

    def iteration_clause(
        self,
        builders: list[Builder],
        term: ast.Term,
        scope: Scope,
        conflict: Callable[[], None],
    ) -> ClauseFn | None:
        """A clause whose body is one `some … in` loop with deterministic statements
        around it, as one generated function (None for any other body).

        It runs like the continuation-passing form: the statements before the loop,
        the whole collection charged to the step limit, then each member through the
        statements after it into the head; a constant head stops at the first
        solution, any other collects every solution and raises on a conflict.
        """
        loops = [i for i, b in enumerate(builders) if isinstance(b, IterStmt)]
        if len(loops) != 1 or not all(isinstance(b, Stmt | IterStmt) for b in builders):
            return None
        (at,) = loops
        loop = builders[at]
        assert isinstance(loop, IterStmt)
        before = [b.direct for b in builders[:at] if isinstance(b, Stmt) and b is not NOOP]
        after = [b.direct for b in builders[at + 1 :] if isinstance(b, Stmt) and b is not NOOP]
        if len(after) > _MOST_INLINE_STATEMENTS:
            after = [sequence(after)]
        const = constant(term)
        mark = len(self.diagnostics)
        head_hoists: list[Builder] = []
        try:
            head_fn = self.value(term, scope.copy(), head_hoists)
        except NotReady:
            head_hoists = [NOOP]
        if head_hoists:
            del self.diagnostics[mark:]  # the general form compiles (and reports) it again
            return None
        env: dict[str, Any] = {"U": UNDEFINED, "M": MISSING, "COLLECTIONS": COLLECTIONS}
        env["iterate"], env["equal"], env["conflict"] = iterate, equal, conflict
        env["head"] = dict(const) if isinstance(const, FrozenDict) else const
        if const is MISSING:
            env["head"] = head_fn
        lines = ["def get(ctx, f):"]
        for k, test in enumerate(before):
            setup, holds = self.test_source(test, f"b{k}", env)
            lines.extend("    " + line for line in setup)
            lines.append(f"    if not ({holds}):\n        return U")
        # Operand numbers past any statement's (`a{k}`, `b{k}`) keep the names apart.
        setup, items, _undefined = self.operand_source(loop.coll, 98, env)
        lines.extend(setup)
        lines.append(f"    items = {items}")
        lines.append("    if not isinstance(items, COLLECTIONS):\n        return U")
        lines.append("    ctx.steps -= len(items)")
        lines.append("    if ctx.steps < 0:\n        ctx.spend(0)")
        if const is not MISSING:
            lines.extend(self.constant_loop_source(loop, after, env))
        if const is MISSING:
            lines.append("    found = M")
        if loop.key_slot:
            lines.append("    for key, val in iterate(items):")
            lines.append(f"        f[{loop.key_slot}] = key")
        else:
            lines.append("    for val in (items.values() if isinstance(items, dict) else items):")
        lines.append(f"        f[{loop.val_slot}] = val")
        indent = "        "
        for k, test in enumerate(after):
            setup, holds = self.test_source(test, f"a{k}", env)
            lines.extend(indent + line for line in setup)
            lines.append(f"{indent}if {holds}:")
            indent += "    "
        if const is not MISSING:
            lines.append(f"{indent}return head")
            lines.append("    return U")
        else:
            lines.append(f"{indent}v = head(ctx, f)")
            lines.append(f"{indent}if v is not U:")
            lines.append(f"{indent}    if found is M:\n{indent}        found = v")
            lines.append(f"{indent}    elif not equal(found, v):\n{indent}        conflict()")
            lines.append("    return U if found is M else found")
        run: ClauseFn = generate("\n".join(lines) + "\n", env, self._code_cache)
        return run

    def constant_loop_source(
        self, loop: IterStmt, after: list[Any], env: dict[str, Any]
    ) -> list[str]:
        """Statements answering a loop over constant members at once (a constant head,
        no key, one test after the loop, see `glob_any_source` and `equal_any_source`),
        or falling through to the loop for the values they do not cover."""
        coll = self._known.get(id(loop.coll))
        if loop.key_slot or len(after) != 1 or coll is None or coll[0] != "const":
            return []
        members = coll[1]
        if type(members) not in (tuple, frozenset):
            return []
        return self.glob_any_source(loop, after[0], members, env) or self.equal_any_source(
            loop, after[0], members, env
        )

    def loop_invariant(self, fn: ValueFn, loop: IterStmt) -> bool:
        """Whether `fn` is a constant, a constant path or another variable: the same
        in every turn of `loop`, read without side effects or errors."""
        known = self._known.get(id(fn))
        if known is None or known[0] not in ("const", "path", "slot"):
            return False
        return known[:2] != ("slot", loop.val_slot)

    def glob_any_source(
        self, loop: IterStmt, test: Any, patterns: Any, env: dict[str, Any]
    ) -> list[str]:
        """`some p in <constant globs>; glob.match(p, null, x)`: one alternation of
        every pattern, matched once when `x` is a string (no pattern can fail then, so
        no error or order is lost). Other cases loop."""
        glob = self._glob_tests.get(test)
        if glob is None:
            return []
        pattern_fn, value_fn = glob
        pattern = self._known.get(id(pattern_fn))
        if pattern is None or pattern[:2] != ("slot", loop.val_slot):
            return []
        if not self.loop_invariant(value_fn, loop):
            return []
        matcher = glob_alternation(patterns)
        if matcher is None:
            return []
        env["any_glob"] = matcher
        setup, text, _undefined = self.operand_source(value_fn, 99, env)
        return [
            *setup,
            f"    if type({text}) is str:",
            f"        return head if any_glob({text}) is not None else U",
        ]

    def equal_any_source(
        self, loop: IterStmt, test: Any, members: Any, env: dict[str, Any]
    ) -> list[str]:
        """`some m in <constant members>; m == x` (either side, or `=` between bound
        terms): one set lookup when every member and `x` is a string, an integer or
        null, where Python's equality and hashing are Rego's (no booleans: Python's
        `True == 1`). Other values (booleans, Decimals, floats, collections) loop, so
        the answer is the loop's in every case."""
        operands = self._equality_tests.get(test)
        if operands is None or not all(type(m) in _HASHED_AS_IN_REGO for m in members):
            return []
        left, right = operands
        member = ("slot", loop.val_slot)
        if (self._known.get(id(left)) or ())[:2] == member:
            value_fn = right
        elif (self._known.get(id(right)) or ())[:2] == member:
            value_fn = left
        else:
            return []
        if not self.loop_invariant(value_fn, loop):
            return []
        env["equal_any"], env["hashed_as_in_rego"] = frozenset(members), _HASHED_AS_IN_REGO
        setup, text, _undefined = self.operand_source(value_fn, 99, env)
        return [
            *setup,
            f"    if type({text}) in hashed_as_in_rego:",
            f"        return head if {text} in equal_any else U",
        ]

    def fresh_evaluator(self, fn: Any) -> RuleFn | None:
        """For the evaluator of a rule that reads `input` (so is cached per evaluation):
        the function computing its value without a cache lookup, for a new context."""
        known = self._known.get(id(fn))
        if known is None or known[0] != "rule" or known[1][0] != "cache":
            return None
        fill: RuleFn = known[1][2]
        return fill

    def constant_rule(self, path: tuple[str, ...]) -> Any:
        """The value of a rule that is a plain constant (`p := [1, 2]`), or MISSING.

        Such rules are inlined at their references, unless some `with` statement
        could replace rule values.
        """
        group = self.index.groups[path]
        if self.replaceable(path) or group.kind != "complete" or group.default is not None:
            return MISSING
        if len(group.definitions) != 1:
            return MISSING
        rule = group.definitions[0][1]
        if not isinstance(rule, ast.CompleteRule) or rule.body or rule.elses or rule.value is None:
            return MISSING
        value = constant(rule.value)
        return dict(value) if isinstance(value, FrozenDict) else value

    def compute_group(self, group: RuleGroup) -> RuleFn:
        definitions = [self.definition(module, rule) for module, rule in group.definitions]
        default = MISSING
        if group.default is not None:
            default = self.default_value(group.default)
        span = group.definitions[0][1].span if group.definitions else None
        name = ".".join(group.path[1:])
        if group.kind == "set":
            parts = [self._set_parts.get(d) for d in definitions]
            if all(part is not None for part in parts):
                bodies = [part for part in parts if part is not None]

                def compute_set_together(ctx: Ctx) -> Any:
                    out: set[Any] = set()
                    for run, layout in bodies:
                        f: Frame = [None] * layout.size
                        f[0] = out  # every definition collects into the same set
                        run(ctx, f, go_on)
                    return frozenset(out)

                return compute_set_together

            def compute_set(ctx: Ctx) -> Any:
                out: set[Any] = set()
                for d in definitions:
                    out |= d(ctx)
                return frozenset(out)

            return compute_set
        if group.kind == "object":

            def compute_object(ctx: Ctx) -> Any:
                out: dict[Any, Any] = {}
                for d in definitions:
                    for key, val in d(ctx).items():
                        if key in out and not equal(out[key], val):
                            raise EvalError(
                                CONFLICT_ERROR,
                                f"object keys must be unique (rule data.{name}.{key} "
                                "produced conflicting values)",
                                span,
                            )
                        out[key] = val
                return out

            return compute_object

        def compute_complete(ctx: Ctx) -> Any:
            result = UNDEFINED
            for d in definitions:
                v = d(ctx)
                if v is UNDEFINED:
                    continue
                if result is UNDEFINED:
                    result = v
                elif not equal(result, v):
                    raise EvalError(
                        CONFLICT_ERROR,
                        f"complete rules must not produce multiple outputs (rule data.{name} "
                        "produced conflicting values)",
                        span,
                    )
            if result is UNDEFINED and default is not MISSING:
                return default
            return result

        chosen: RuleFn = compute_complete
        if len(definitions) == 1 and default is MISSING:
            chosen = definitions[0]
        elif len(definitions) == 1:
            # One definition and a default (`default p := …`): nothing can conflict.
            (only,) = definitions

            def compute_or_default(ctx: Ctx) -> Any:
                value = only(ctx)
                return default if value is UNDEFINED else value

            chosen = compute_or_default
        shapes = [self._definition_shapes.get(d) for d in definitions]
        if all(shape is not None for shape in shapes):

            def conflict() -> None:
                raise EvalError(
                    CONFLICT_ERROR,
                    f"complete rules must not produce multiple outputs (rule data.{name} "
                    "produced conflicting values)",
                    span,
                )

            known = [shape for shape in shapes if shape is not None]
            self._group_shapes[chosen] = (known, default, conflict)
        return chosen

    def default_value(self, rule: ast.DefaultRule) -> Any:
        value = constant(rule.value)
        if value is MISSING:
            self.problem(COMPILE_ERROR, "a default value must be a constant", rule.value.span)
            return UNDEFINED
        return dict(value) if isinstance(value, FrozenDict) else value

    def definition(self, module: ast.Module, rule: ast.Rule) -> RuleFn:
        scope = self.module_scope(module)
        if isinstance(rule, ast.CompleteRule):
            clauses = [(rule.body, rule.value), *((e.body, e.value) for e in rule.elses)]
            name = ".".join(("data", *module.package, *rule.name))
            message = (
                "complete rules must not produce multiple outputs "
                f"(rule {name} produced conflicting values)"
            )
            runners = [
                self.clause(body, value, scope.copy(), rule.span, message)
                for body, value in clauses
            ]
            return self.first_defined(runners, scope.layout)
        if isinstance(rule, ast.PartialSetRule):
            return self.set_definition(rule, scope)
        if isinstance(rule, ast.PartialObjectRule):
            return self.object_definition(rule, scope)
        return lambda ctx: UNDEFINED

    def safe_body(
        self, body: tuple[ast.Literal, ...], scope: Scope, needed: set[str]
    ) -> list[Builder]:
        try:
            return self.body(body, scope, needed)
        except NotReady as exc:
            self.unsafe(exc)
            # Report the body's problem only, not the head variables it failed to bind.
            scope.declared |= needed
            for name in needed:
                scope.bound.setdefault(name, 0)
            return [lambda nxt: lambda ctx, f, k: False]

    def unsafe(self, exc: NotReady) -> None:
        names = sorted(n for n in exc.names if n != "_") or ["_"]
        listed = ", ".join(f"`{n}`" for n in names)
        self.problem(
            "rego_unsafe_var_error",
            f"var {listed} is unsafe: nothing in the body assigns it a value "
            "(bind it with `:=`, `some … in …` or a reference before using it)",
            exc.span or Span(file="<policy>", line=0, column=0),
        )

    def head(
        self, terms: tuple[ast.Term, ...], scope: Scope, collect: Callable[..., bool], span: Span
    ) -> Step:
        hoists: list[Builder] = []
        try:
            fns = [self.value(t, scope, hoists) for t in terms]
        except NotReady as exc:
            self.unsafe(NotReady(exc.names, exc.span or span))
            return lambda ctx, f, k: False

        if len(fns) == 1:
            (fn,) = fns

            def collect1(ctx: Ctx, f: Frame, k: Cont) -> bool:
                v = fn(ctx, f)
                if v is UNDEFINED:
                    return False
                return collect(f, v)

            last: Step = collect1
        else:
            key_fn, val_fn = fns

            def collect2(ctx: Ctx, f: Frame, k: Cont) -> bool:
                key, val = key_fn(ctx, f), val_fn(ctx, f)
                if key is UNDEFINED or val is UNDEFINED:
                    return False
                return collect(f, key, val)

            last = collect2
        return chain(hoists, last)

    def clause(
        self,
        body: tuple[ast.Literal, ...],
        value: ast.Term | None,
        scope: Scope,
        span: Span,
        conflict: str,
    ) -> ClauseFn:
        """One `value if body` clause of a complete rule/function: its value in a frame.

        A deterministic body with a plain head runs straight-line; otherwise every
        solution is enumerated and conflicting values raise.
        """
        term: ast.Term = value if value is not None else ast.BoolLit(span=span, value=True)
        builders = self.safe_body(body, scope, set(term_vars(term)))
        const = constant(term)
        stop_at_first = const is not MISSING
        direct = direct_body(builders)
        if direct is not None:
            parts = [b.direct for b in builders if isinstance(b, Stmt) and b is not NOOP]
            head_hoists: list[Builder] = []
            try:
                head_fn = self.value(term, scope.copy(), head_hoists)
            except NotReady:
                head_hoists = [NOOP]  # reported by the general path below
            if not head_hoists:
                if stop_at_first:
                    if isinstance(const, FrozenDict):
                        const = dict(const)
                    fixed = const

                    def run_const(ctx: Ctx, f: Frame) -> Any:
                        return fixed if direct(ctx, f) else UNDEFINED

                    self._clause_shapes[run_const] = (direct, "const", fixed, parts)
                    return run_const

                def run_value(ctx: Ctx, f: Frame) -> Any:
                    return head_fn(ctx, f) if direct(ctx, f) else UNDEFINED

                self._clause_shapes[run_value] = (direct, "value", head_fn, parts)
                return run_value

        def collect(f: Frame, v: Any) -> bool:
            acc = f[0]
            if acc is MISSING:
                f[0] = v
                return stop_at_first
            if not equal(acc, v):
                raise EvalError(CONFLICT_ERROR, conflict, span)
            return False

        def raise_conflict() -> None:
            raise EvalError(CONFLICT_ERROR, conflict, span)

        iterated = self.iteration_clause(builders, term, scope, raise_conflict)
        if iterated is not None:
            self._clause_shapes[iterated] = (always, "value", iterated, [])
            return iterated

        run = chain(builders, self.head((term,), scope, collect, span))

        def enumerate_solutions(ctx: Ctx, f: Frame) -> Any:
            f[0] = MISSING
            run(ctx, f, go_on)
            v = f[0]
            return UNDEFINED if v is MISSING else v

        return enumerate_solutions

    def set_definition(self, rule: ast.PartialSetRule, scope: Scope) -> RuleFn:
        builders = self.safe_body(rule.body, scope, set(term_vars(rule.element)))

        def collect(f: Frame, v: Any) -> bool:
            f[0].add(freeze(v))
            return False

        run = chain(builders, self.head((rule.element,), scope, collect, rule.span))
        layout = scope.layout

        def evaluate(ctx: Ctx) -> Any:
            f: Frame = [None] * layout.size
            f[0] = set()
            run(ctx, f, go_on)
            return f[0]

        self._set_parts[evaluate] = (run, layout)
        return evaluate

    def object_definition(self, rule: ast.PartialObjectRule, scope: Scope) -> RuleFn:
        value: ast.Term = (
            rule.value if rule.value is not None else ast.BoolLit(span=rule.span, value=True)
        )
        builders = self.safe_body(rule.body, scope, set(term_vars((rule.key, value))))
        span = rule.span
        name = ".".join(("data", *module_package(scope), *rule.name))

        def collect(f: Frame, key: Any, val: Any) -> bool:
            acc = f[0]
            key = freeze(key)
            if key in acc and not equal(acc[key], val):
                raise EvalError(
                    CONFLICT_ERROR,
                    f"object keys must be unique (rule {name}.{key} produced conflicting values)",
                    span,
                )
            acc[key] = val
            return False

        run = chain(builders, self.head((rule.key, value), scope, collect, span))
        layout = scope.layout

        def evaluate(ctx: Ctx) -> Any:
            f: Frame = [None] * layout.size
            f[0] = {}
            run(ctx, f, go_on)
            return f[0]

        return evaluate

    # ---- functions -----------------------------------------------------------------------

    def function(self, path: tuple[str, ...]) -> FuncFn:
        found = self._funcs.get(path)
        if found is not None:
            self.note_dependency(path)
            return found
        group = self.index.groups[path]
        self._reading_input.append(False)
        try:
            definitions = [
                self.function_definition(m, r)
                for m, r in group.definitions
                if isinstance(r, ast.FunctionRule)
            ]
        finally:
            self._reads_input[path] = self._reading_input.pop()
        self.note_dependency(path)
        default = self.default_value(group.default) if group.default is not None else MISSING
        span = group.definitions[0][1].span if group.definitions else None
        name = ".".join(path[1:])

        def call(ctx: Ctx, args: tuple[Any, ...]) -> Any:
            result = UNDEFINED
            for d in definitions:
                v = d(ctx, args)
                if v is UNDEFINED:
                    continue
                if result is UNDEFINED:
                    result = v
                elif not equal(result, v):
                    raise EvalError(
                        CONFLICT_ERROR,
                        f"functions must not produce multiple outputs for same inputs "
                        f"(function data.{name} produced conflicting values for the same inputs)",
                        span,
                    )
            if result is UNDEFINED and default is not MISSING:
                return default
            return result

        chosen: FuncFn = call
        if len(definitions) == 1 and default is MISSING:
            chosen = definitions[0]  # nothing to reconcile: call the definition directly
        self._funcs[path] = chosen
        return chosen

    def function_definition(self, module: ast.Module, rule: ast.FunctionRule) -> FuncFn:
        scope = self.module_scope(module)
        for name in term_vars(rule.args):
            scope.declared.add(name)
        try:
            matchers = [self.pattern(arg, scope) for arg in rule.args]
        except NotReady as exc:
            self.unsafe(exc)
            return lambda ctx, args: UNDEFINED
        # Plain, distinct variable arguments (the usual case) are stored straight into
        # their slots; anything else (constants, arrays, `_`, repeats) goes through matchers.
        names = [arg.name if isinstance(arg, ast.Var) else "" for arg in rule.args]
        plain = all(n and n != "_" for n in names) and len(set(names)) == len(names)
        slots = [scope.bound[n] for n in names] if plain else []
        clauses = [(rule.body, rule.value), *((e.body, e.value) for e in rule.elses)]
        name = ".".join(("data", *module.package, *rule.name))
        message = (
            "functions must not produce multiple outputs for same inputs "
            f"(function {name} produced conflicting values for the same inputs)"
        )
        runners = [
            self.clause(body, value, scope.copy(), rule.span, message) for body, value in clauses
        ]
        layout = scope.layout

        size = layout.size
        if plain and slots and len(runners) > 1:
            # An `else` chain of straight-line clauses: one generated function.
            env: dict[str, Any] = {"size": size}
            chain_lines = self.inline_chain(runners, env)
            if chain_lines is not None:
                targets = ", ".join(f"f[{slot}]" for slot in slots)
                source = (
                    f"def call(ctx, args):\n    f = [None] * size\n    {targets}, = args\n"
                    + "\n".join(chain_lines)
                    + "\n"
                )
                chained: FuncFn = generate(source, env, self._code_cache)
                return chained
        if plain and len(runners) == 1 and len(slots) in (1, 2):
            (only,) = runners
            if len(slots) == 1:
                (s0,) = slots

                def evaluate_one_arg(ctx: Ctx, args: tuple[Any, ...]) -> Any:
                    f: Frame = [None] * size
                    f[s0] = args[0]
                    return only(ctx, f)

                return evaluate_one_arg
            s0, s1 = slots

            def evaluate_two_args(ctx: Ctx, args: tuple[Any, ...]) -> Any:
                f: Frame = [None] * size
                f[s0], f[s1] = args
                return only(ctx, f)

            return evaluate_two_args
        if plain and len(runners) == 1:
            (only,) = runners

            def evaluate_plain(ctx: Ctx, args: tuple[Any, ...]) -> Any:
                f: Frame = [None] * size
                for slot, a in zip(slots, args, strict=True):
                    f[slot] = a
                return only(ctx, f)

            return evaluate_plain

        def evaluate(ctx: Ctx, args: tuple[Any, ...]) -> Any:
            f: Frame = [None] * size
            for m, a in zip(matchers, args, strict=True):
                if not m(ctx, f, a):
                    return UNDEFINED
            for clause in runners:
                v = clause(ctx, f)
                if v is not UNDEFINED:
                    return v
            return UNDEFINED

        return evaluate

    # ---- namespaces and queries ----------------------------------------------------------

    def namespace(self, path: tuple[str, ...]) -> RuleFn:
        found = self._namespaces.get(path)
        if found is not None:
            self.note_dependency(path)
            return found
        children: list[tuple[str, RuleFn]] = []
        self._reading_input.append(False)
        try:
            for name in sorted(self.index.children(path)):
                child = (*path, name)
                group = self.index.groups.get(child)
                if group is not None:
                    if group.kind != "function":
                        children.append((name, self.rule(child)))
                else:
                    children.append((name, self.namespace(child)))
        finally:
            self._reads_input[path] = self._reading_input.pop()
        self.note_dependency(path)
        data_path = path[1:]

        def evaluate(ctx: Ctx, _frame: Frame | None = None) -> Any:
            if ctx.overrides is not None and path in ctx.overrides:
                return ctx.overrides[path]
            base: Any = ctx.data
            for key in data_path:
                base = index_value(base, key)
            out = dict(base) if isinstance(base, dict) else {}
            for name, fn in children:
                v = fn(ctx)
                if v is not UNDEFINED:
                    out[name] = v
            return out

        self._namespaces[path] = evaluate
        return evaluate

    def query(self, body: tuple[ast.Literal, ...]) -> CompiledQuery:
        scope = self.module_scope(None)
        try:
            builders = self.body(body, scope, set())
        except NotReady as exc:
            self.unsafe(exc)
            builders = []
        names = {n for n in term_vars(body) if not n.startswith("_") and n not in ("input", "data")}
        outputs = {n: scope.bound[n] for n in sorted(names) if n in scope.bound}
        return CompiledQuery(chain(builders), scope.layout, outputs)

    def first_defined(self, clauses: list[ClauseFn], layout: Layout) -> RuleFn:
        """The first defined clause value (`else` chains); single clauses are
        recorded in `_single_clauses` so the memoising wrapper can run them directly,
        and chains of straight-line clauses run as generated code (and are recorded
        in `_definition_shapes` for the rule's evaluator to inline)."""
        size = layout.size
        shapes = [self._clause_shapes.get(c) for c in clauses]
        known = [shape for shape in shapes if shape is not None]
        if len(known) == len(shapes) and len(clauses) > 1:
            env: dict[str, Any] = {"size": size}
            lines = self.inline_chain(clauses, env)
            assert lines is not None
            source = "def get(ctx):\n    f = [None] * size\n" + "\n".join(lines) + "\n"
            chain_fn: RuleFn = generate(source, env, self._code_cache)
            self._definition_shapes[chain_fn] = (known, size)
            return chain_fn
        if len(clauses) == 1:
            (clause,) = clauses

            def evaluate_one(ctx: Ctx) -> Any:
                return clause(ctx, [None] * size)

            self._single_clauses[evaluate_one] = (clause, size)
            if known:
                self._definition_shapes[evaluate_one] = (known, size)
            return evaluate_one
        return _first_defined(clauses, size)

    def inline_chain(self, clauses: list[ClauseFn], env: dict[str, Any]) -> list[str] | None:
        """Statements returning the first defined clause value in frame `f`, or None
        unless every clause is straight-line (see `_clause_shapes`)."""
        shapes = [self._clause_shapes.get(c) for c in clauses]
        known = [shape for shape in shapes if shape is not None]
        if len(known) != len(shapes):
            return None
        lines = self.chain_lines(known, "e", env, "value")
        return ["    " + line for line in lines] + ["    return value"]


def glob_alternation(patterns: Any) -> Callable[[str], Any] | None:
    """One regex matching what any of the glob `patterns` (no delimiters) matches, or
    None unless they are a few valid string patterns."""
    if type(patterns) not in (tuple, frozenset) or not 0 < len(patterns) <= 512:
        return None
    if not all(type(p) is str for p in patterns):
        return None
    try:
        regexes = [compile_glob(p, "").pattern for p in patterns]
        either = re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL)
    except (BuiltinError, re.error):
        return None
    return either.fullmatch


def _first_defined(clauses: list[ClauseFn], size: int) -> RuleFn:
    """The first defined clause value of an `else` chain, clause by clause."""

    def evaluate(ctx: Ctx) -> Any:
        f: Frame = [None] * size
        for clause in clauses:
            v = clause(ctx, f)
            if v is not UNDEFINED:
                return v
        return UNDEFINED

    return evaluate


def module_package(scope: Scope) -> tuple[str, ...]:
    return scope.package
