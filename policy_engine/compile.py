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
patterns), `compile_calls.CallCompiler` (operators and calls),
`compile_body.BodyCompiler` (statements and their order),
`compile_rules.RuleSourceCompiler` (generated source of rules, clauses and
loops), and here `Compiler` (rules, functions, packages, queries: what to
compile, and the closures where no source is generated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policy_engine import ast
from policy_engine.codegen import generate
from policy_engine.compile_rules import RuleSourceCompiler
from policy_engine.errors import COMPILE_ERROR, CONFLICT_ERROR, EvalError
from policy_engine.index import TREE_KINDS, RuleGroup
from policy_engine.runtime import (
    MISSING,
    Cont,
    Ctx,
    Frame,
    Step,
    index_value,
)
from policy_engine.source import Span
from policy_engine.steps import (
    NOOP,
    Builder,
    ClauseFn,
    FuncFn,
    RuleFn,
    Stmt,
    always,
    chain,
    constant,
    direct_body,
    go_on,
)
from policy_engine.terms import Layout, NotReady, Scope, term_vars
from policy_engine.values import UNDEFINED, FrozenDict, equal, freeze, to_json_text

__all__ = ["Builder", "ClauseFn", "CompiledQuery", "Compiler", "FuncFn", "RuleFn"]


class CompiledQuery:
    """A compiled query body and the slots of its user-visible variables."""

    def __init__(self, step: Step, layout: Layout, outputs: dict[str, int]) -> None:
        self.step = step
        self.size = layout.size
        self.outputs = outputs


class Compiler(RuleSourceCompiler):
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
        # A rule met inside an array comprehension is compiled for every reader.
        ordered, self._ordered = self._ordered, 0
        try:
            compute = self.compute_group(group)
        finally:
            self._reads_input[path] = self._reading_input.pop()
            self._ordered = ordered
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
        if group.kind == "general":
            return self.compute_tree(group)
        computed = self.computed_default(group)
        if computed is not None:
            return computed
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

    # ---- general reference heads ----------------------------------------------------------

    def compute_tree(self, group: RuleGroup) -> RuleFn:
        """A group of general ref-head rules: the object built from their key paths."""
        parts = [self.tree_definition(module, rule) for module, rule in group.definitions]
        self._tree_entries[group.path] = parts
        name = "data." + ".".join(group.path[1:])

        def compute(ctx: Ctx) -> Any:
            entries: list[TreeEntry] = []
            for part in parts:
                entries += part(ctx)
            return build_tree(entries, name)

        return compute

    def tree_definition(self, module: ast.Module, rule: ast.Rule) -> Callable[[Ctx], Any]:
        """One rule's (key path, value, is-set) entries; `p[k] := v` is the path `(k,)`."""
        if isinstance(rule, ast.PartialObjectRule):
            rule = ast.GeneralRule(
                span=rule.span, name=rule.name, keys=(rule.key,), value=rule.value, body=rule.body
            )
        if not isinstance(rule, ast.GeneralRule):
            return lambda ctx: []
        scope = self.module_scope(module)
        value: ast.Term = (
            rule.value if rule.value is not None else ast.BoolLit(span=rule.span, value=True)
        )
        terms = (*rule.keys, value)
        builders = self.safe_body(rule.body, scope, set(term_vars(terms)))
        hoists: list[Builder] = []
        try:
            fns = [self.value(t, scope, hoists) for t in terms]
        except NotReady as exc:
            self.unsafe(NotReady(exc.names, exc.span or rule.span))
            return lambda ctx: []
        is_set = rule.contains

        def collect(ctx: Ctx, f: Frame, k: Cont) -> bool:
            values = [fn(ctx, f) for fn in fns]
            if any(v is UNDEFINED for v in values):
                return False
            value = frozenset((freeze(values[-1]),)) if is_set else values[-1]
            f[0].append((tuple(freeze(v) for v in values[:-1]), value, is_set))
            return False

        run = chain(builders, chain(hoists, collect))
        layout = scope.layout

        def entries(ctx: Ctx) -> Any:
            f: Frame = [None] * layout.size
            f[0] = []
            run(ctx, f, go_on)
            return f[0]

        return entries

    def tree_namespace(self, path: tuple[str, ...]) -> RuleFn:
        """A path holding a key-tree rule and other rules under it: one merged object."""
        parts: list[tuple[tuple[Any, ...], str, Any]] = []
        for group in self.index.groups_under(path):
            if group.kind == "function":
                continue
            evaluate = self.rule(group.path)
            relative = group.path[len(path) :]
            if group.kind == "general":
                parts.append((relative, "entries", self._tree_entries[group.path]))
            else:
                parts.append((relative, group.kind, evaluate))
        name = "data." + ".".join(path[1:])
        data_path = path[1:]

        def evaluate_tree(ctx: Ctx, _frame: Frame | None = None) -> Any:
            if ctx.overrides is not None and path in ctx.overrides:
                return ctx.overrides[path]
            entries: list[TreeEntry] = []
            for relative, kind, fn in parts:
                if kind == "entries":
                    for definition in fn:
                        for keys, value, is_set in definition(ctx):
                            entries.append(((*relative, *keys), value, is_set))
                    continue
                value = fn(ctx)
                if value is UNDEFINED:
                    continue
                if kind == "object":
                    entries += (((*relative, key), item, False) for key, item in value.items())
                else:
                    entries.append((relative, value, kind == "set"))
            tree = build_tree(entries, name)
            base: Any = ctx.data
            for key in data_path:
                base = index_value(base, key)
            if isinstance(base, dict):
                return {**base, **tree}
            return tree

        return evaluate_tree

    def computed_default(self, group: RuleGroup) -> RuleFn | None:
        """A complete rule whose default is a comprehension (`default p := [x | …]`):
        the rule without its default, then the comprehension's value when undefined.
        None when the default is a constant (the usual case, compiled inline)."""
        rule = group.default
        if rule is None or rule.args is not None or constant(rule.value) is not MISSING:
            return None
        if not isinstance(rule.value, ast.ArrayCompr | ast.SetCompr | ast.ObjectCompr):
            return None  # reported by `default_value`
        scope = self.module_scope(group.default_module)
        hoists: list[Builder] = []
        try:
            value = self.value(rule.value, scope, hoists)
        except NotReady as exc:
            self.unsafe(exc)
            return None
        without = RuleGroup(
            path=group.path, kind=group.kind, package=group.package,
            definitions=group.definitions, default=None, arity=group.arity,
        )  # fmt: skip
        compute = self.compute_group(without)
        size = scope.layout.size

        def compute_or_computed_default(ctx: Ctx) -> Any:
            v = compute(ctx)
            return value(ctx, [None] * size) if v is UNDEFINED else v

        return compute_or_computed_default

    def default_value(self, rule: ast.DefaultRule) -> Any:
        value = constant(rule.value)
        if value is MISSING:
            self.problem(
                COMPILE_ERROR,
                "a default value must be a constant or a comprehension",
                rule.value.span,
            )
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
        ordered, self._ordered = self._ordered, 0
        try:
            definitions = [
                self.function_definition(m, r)
                for m, r in group.definitions
                if isinstance(r, ast.FunctionRule)
            ]
        finally:
            self._reads_input[path] = self._reading_input.pop()
            self._ordered = ordered
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
        if plain and slots:
            # A straight-line clause, or an `else` chain of them: one generated function
            # (a call then runs one Python frame, not the clause's closures' three).
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
            own = self.index.groups.get(path)
            if own is not None and own.kind in TREE_KINDS:
                tree = self.tree_namespace(path)
                self._namespaces[path] = tree
                self.note_dependency(path)
                return tree
            for name in sorted(self.index.children(path)):
                child = (*path, name)
                group = self.index.groups.get(child)
                if child in self.index.namespaces:
                    children.append((name, self.namespace(child)))
                elif group is not None and group.kind != "function":
                    children.append((name, self.rule(child)))
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


TreeEntry = tuple[tuple[Any, ...], Any, bool]
"""A value at a key path under a rule tree, and whether it is a set to merge by union."""


class _Leaf:
    """A rule's value in a tree being built (not merged into, unlike the objects above it)."""

    __slots__ = ("is_set", "value")

    def __init__(self, value: Any, is_set: bool) -> None:
        self.value = set(value) if is_set else value
        self.is_set = is_set


def build_tree(entries: list[TreeEntry], name: str) -> dict[Any, Any]:
    """Nest `(keys, value)` entries into objects, as OPA merges general ref heads.

    Two rules may give the same path the same value, and sets at the same path
    merge; anything else at one path (different values, a value where another rule
    goes deeper) is an `eval_conflict_error`.
    """
    root: dict[Any, Any] = {}
    for keys, value, is_set in entries:
        node = root
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif isinstance(child, _Leaf):
                _tree_conflict(name, keys)
            node = child
        last = keys[-1]
        existing = node.get(last)
        if existing is None:
            node[last] = _Leaf(value, is_set)
        elif not isinstance(existing, _Leaf):
            _tree_conflict(name, keys)
        elif is_set and existing.is_set:
            existing.value |= value
        elif is_set or existing.is_set or not equal(existing.value, value):
            _tree_conflict(name, keys)
    return _tree_value(root)


def _tree_value(node: dict[Any, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, child in node.items():
        if isinstance(child, _Leaf):
            out[key] = frozenset(child.value) if child.is_set else child.value
        else:
            out[key] = _tree_value(child)
    return out


def _tree_conflict(name: str, keys: tuple[Any, ...]) -> None:
    shown = "".join(f"[{to_json_text(k)}]" for k in keys)
    raise EvalError(
        CONFLICT_ERROR,
        f"object keys must be unique (rules under {name} produced conflicting values "
        f"at {name}{shown})",
        None,
    )


def module_package(scope: Scope) -> tuple[str, ...]:
    return scope.package
