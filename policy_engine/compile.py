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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from types import CodeType
from typing import Any

from policy_engine import ast
from policy_engine.builtins import BUILTINS, Builtin, BuiltinError
from policy_engine.errors import COMPILE_ERROR, CONFLICT_ERROR, TYPE_ERROR, Diagnostic, EvalError
from policy_engine.index import RuleGroup, RuleIndex
from policy_engine.runtime import (
    MISSING,
    Cont,
    Ctx,
    Frame,
    Step,
    ValueFn,
    index_value,
    iterate,
    set_path,
)
from policy_engine.source import Span
from policy_engine.terms import Layout, NotReady, Scope, term_vars
from policy_engine.values import UNDEFINED, FrozenDict, equal, freeze, normalize_number

__all__ = ["CompiledQuery", "Compiler"]

Builder = Callable[[Step], Step]
Direct = Callable[[Ctx, Frame], bool]
ClauseFn = Callable[[Ctx, Frame], Any]
Matcher = Callable[[Ctx, Frame, Any], bool]
RuleFn = Callable[..., Any]
"""`evaluate(ctx)`; rule and namespace evaluators also accept a frame, so they
can stand where a `ValueFn` is expected."""
FuncFn = Callable[[Ctx, tuple[Any, ...]], Any]

_OPERATORS = {
    "+": "plus", "-": "minus", "*": "mul", "/": "div", "%": "rem", "&": "and", "|": "or",
    "<": "lt", "<=": "lte", ">": "gt", ">=": "gte",
}  # fmt: skip
_UNIFY_WORDS = {"=", ":="}


def _final(ctx: Ctx, f: Frame, k: Cont) -> bool:
    return k(ctx, f)


def _stop(ctx: Ctx, f: Frame) -> bool:
    return True


def _go_on(ctx: Ctx, f: Frame) -> bool:
    return False


def _chain(builders: list[Builder], last: Step = _final) -> Step:
    units: list[tuple[Builder, list[Direct]]] = []
    for build in builders:
        if isinstance(build, Stmt) and units and isinstance(units[-1][0], IterStmt):
            if build is not _NOOP:
                units[-1][1].append(build.direct)
        else:
            units.append((build, []))
    step = last
    for build, filters in reversed(units):
        if filters and isinstance(build, IterStmt):
            step = build.filtered(step, _sequence(filters))
        else:
            step = build(step)
    return step


def number_value(text: str) -> int | Decimal:
    if text.lstrip("-").isdigit():
        return int(text)
    return normalize_number(Decimal(text))


def constant(term: ast.Term) -> Any:
    """The value of a term made only of literals, or MISSING."""
    if isinstance(term, ast.StringLit | ast.BoolLit):
        return term.value
    if isinstance(term, ast.NumberLit):
        return number_value(term.text)
    if isinstance(term, ast.NullLit):
        return None
    if isinstance(term, ast.ArrayTerm):
        items = [constant(t) for t in term.items]
        return MISSING if any(i is MISSING for i in items) else tuple(items)
    if isinstance(term, ast.SetTerm):
        items = [constant(t) for t in term.items]
        return MISSING if any(i is MISSING for i in items) else frozenset(map(freeze, items))
    if isinstance(term, ast.ObjectTerm):
        pairs = [(constant(i.key), constant(i.value)) for i in term.items]
        if any(k is MISSING or v is MISSING for k, v in pairs):
            return MISSING
        return FrozenDict((freeze(k), v) for k, v in pairs)
    return MISSING


class Stmt:
    """A compiled statement with at most one solution.

    Calling it with the next step gives its continuation-passing step; `direct`
    runs it straight-line (`True` when it holds, slots bound), which lets bodies
    made only of such statements run as a plain sequence of calls.
    """

    __slots__ = ("direct",)

    def __init__(self, direct: Direct) -> None:
        self.direct = direct

    def __call__(self, nxt: Step) -> Step:
        direct = self.direct

        def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
            if direct(ctx, f):
                return nxt(ctx, f, k)
            return False

        return step


def _always(ctx: Ctx, f: Frame) -> bool:
    return True


def _never(ctx: Ctx, f: Frame) -> bool:
    return False


_NOOP = Stmt(_always)


def _truthy_step(fn: ValueFn) -> Stmt:
    def holds(ctx: Ctx, f: Frame) -> bool:
        v = fn(ctx, f)
        return v is not UNDEFINED and v is not False

    return Stmt(holds)


def _match_step(fn: ValueFn, matcher: Matcher) -> Stmt:
    def holds(ctx: Ctx, f: Frame) -> bool:
        v = fn(ctx, f)
        return v is not UNDEFINED and matcher(ctx, f, v)

    return Stmt(holds)


def _sequence(directs: list[Direct]) -> Direct:
    """Straight-line conjunction of deterministic statements."""
    if not directs:
        return _always
    if len(directs) == 1:
        return directs[0]
    if len(directs) == 2:
        first, second = directs
        return lambda ctx, f: first(ctx, f) and second(ctx, f)
    if len(directs) == 3:
        one, two, three = directs
        return lambda ctx, f: one(ctx, f) and two(ctx, f) and three(ctx, f)
    ordered = tuple(directs)

    def run(ctx: Ctx, f: Frame) -> bool:
        return all(d(ctx, f) for d in ordered)

    return run


def direct_body(builders: list[Builder]) -> Direct | None:
    """The straight-line form of a body, if every statement is deterministic."""
    stmts = [b for b in builders if isinstance(b, Stmt)]
    if len(stmts) != len(builders):
        return None
    return _sequence([b.direct for b in stmts if b is not _NOOP])


class IterStmt:
    """Iteration over a collection binding a key slot (0: none) and a value slot.

    `_chain` fuses the deterministic statements right after it into the loop as
    a filter, so a `some x in xs; test(x)` pair costs one loop, no extra calls.
    """

    __slots__ = ("coll", "key_slot", "val_slot")

    def __init__(self, coll: ValueFn, key_slot: int, val_slot: int) -> None:
        self.coll = coll
        self.key_slot = key_slot
        self.val_slot = val_slot

    def __call__(self, nxt: Step) -> Step:
        return self.filtered(nxt, _always)

    def filtered(self, nxt: Step, keep: Direct) -> Step:
        coll, key_slot, val_slot = self.coll, self.key_slot, self.val_slot

        def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
            items = coll(ctx, f)
            if not isinstance(items, dict | list | tuple | frozenset | set):
                return False
            # The whole collection is charged up front: one check per loop, not per item.
            ctx.steps -= len(items)
            if ctx.steps < 0:
                ctx.spend(0)
            if isinstance(items, dict):
                pairs: Any = items.items()
            elif isinstance(items, list | tuple):
                if not key_slot:
                    for val in items:
                        f[val_slot] = val
                        if keep(ctx, f) and nxt(ctx, f, k):
                            return True
                    return False
                pairs = enumerate(items)
            else:
                pairs = ((member, member) for member in items)
            for key, val in pairs:
                if key_slot:
                    f[key_slot] = key
                f[val_slot] = val
                if keep(ctx, f) and nxt(ctx, f, k):
                    return True
            return False

        return step


def _iter_step(coll: ValueFn, key_slot: int, val_slot: int) -> Builder:
    return IterStmt(coll, key_slot, val_slot)


def _iter_match_step(coll: ValueFn, key_matcher: Matcher, val_slot: int) -> Builder:
    def build(nxt: Step) -> Step:
        def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
            for key, val in iterate(coll(ctx, f)):
                ctx.steps -= 1
                if ctx.steps < 0:
                    ctx.spend(0)
                if key_matcher(ctx, f, key):
                    f[val_slot] = val
                    if nxt(ctx, f, k):
                        return True
            return False

        return step

    return build


def _conjunction(parts: list[Builder]) -> Builder:
    direct = direct_body(parts)
    if direct is not None:
        return Stmt(direct)
    return lambda nxt: _chain(parts, nxt)


class CompiledQuery:
    """A compiled query body and the slots of its user-visible variables."""

    def __init__(self, step: Step, layout: Layout, outputs: dict[str, int]) -> None:
        self.step = step
        self.size = layout.size
        self.outputs = outputs


class Compiler:
    """Compiles rules on demand (dependencies first) into evaluator closures."""

    def __init__(self, index: RuleIndex, builtins: Mapping[str, Builtin] = BUILTINS) -> None:
        self.index = index
        self.builtins = builtins
        self.diagnostics: list[Diagnostic] = []
        self._rules: dict[tuple[str, ...], RuleFn] = {}
        self._funcs: dict[tuple[str, ...], FuncFn] = {}
        self._namespaces: dict[tuple[str, ...], RuleFn] = {}
        self._ids = 0
        # What some value functions are, so generated call sites can inline them:
        # id(fn) -> ("const", value) | ("slot", index); the fn is kept alive by the entry.
        self._known: dict[int, tuple[str, Any, ValueFn]] = {}
        self._single_clauses: dict[RuleFn, tuple[ClauseFn, int]] = {}
        self._module_globals: dict[int, dict[str, tuple[str, ...]]] = {}
        self._code_cache: dict[str, CodeType] = {}
        modules = {id(m): m for g in index.groups.values() for m, _ in g.definitions}
        self.rules_replaceable = any(_replaces_data(m) for m in modules.values())

    # ---- problems ------------------------------------------------------------------------

    def problem(self, code: str, message: str, span: Span) -> None:
        self.diagnostics.append(Diagnostic.at(code, message, span))

    # ---- scopes --------------------------------------------------------------------------

    def module_scope(self, module: ast.Module | None) -> Scope:
        if module is None:
            return Scope(layout=Layout(), package=(), globals={})
        package = module.package
        names = self._module_globals.get(id(module))
        if names is None:
            prefix = ("data", *package)
            names = {name: (*prefix, name) for name in self.index.children(prefix)}
            for imp in module.imports:
                if imp.path[0] in ("data", "input") and len(imp.path) > 1:
                    names[imp.alias or imp.path[-1]] = imp.path
            self._module_globals[id(module)] = names
        return Scope(layout=Layout(), package=package, globals=names)

    # ---- bodies --------------------------------------------------------------------------

    def body(
        self, literals: tuple[ast.Literal, ...], scope: Scope, needed: set[str]
    ) -> list[Builder]:
        """Order statements so each runs once the variables it reads are bound."""
        remaining = list(literals)
        var_sets = [set(term_vars(lit)) for lit in literals]
        pending = list(zip(remaining, var_sets, strict=True))
        builders: list[Builder] = []
        while pending:
            errors: list[NotReady] = []
            for position, (lit, _vars) in enumerate(pending):
                trial = scope.copy()
                trial.elsewhere = set(needed) | scope.elsewhere
                for other_position, (_o, other_vars) in enumerate(pending):
                    if other_position != position:
                        trial.elsewhere |= other_vars
                try:
                    builder = self.literal(lit, trial)
                except NotReady as exc:
                    errors.append(exc)
                    continue
                scope.bound, scope.declared = trial.bound, trial.declared
                builders.append(builder)
                del pending[position]
                break
            else:
                first_lit, _vars = pending[0]
                raise NotReady(errors[0].names, errors[0].span or first_lit.span)
        return builders

    def literal(self, lit: ast.Literal, scope: Scope) -> Builder:
        if lit.withs:
            return self.with_literal(lit, scope)
        if lit.negated:
            return self.negated(lit.expr, scope)
        return self.expr(lit.expr, scope)

    def negated(self, expr: ast.Expr, scope: Scope) -> Builder:
        inner_scope = scope.copy()
        builder = self.expr(expr, inner_scope)
        leaked = {
            name
            for name in inner_scope.bound
            if name not in scope.bound and name in scope.elsewhere and name != "_"
        }
        if leaked:
            raise NotReady(leaked, expr.span)
        if isinstance(builder, Stmt):
            holds = builder.direct
            return Stmt(lambda ctx, f: not holds(ctx, f))
        inner = builder(_final)
        return Stmt(lambda ctx, f: not inner(ctx, f, _stop))

    def with_literal(self, lit: ast.Literal, scope: Scope) -> Builder:
        targets: list[tuple[str, tuple[Any, ...]]] = []
        values: list[ValueFn] = []
        for modifier in lit.withs:
            targets.append(self.with_target(modifier))
            hoists: list[Builder] = []
            values.append(self.value(modifier.value, scope, hoists))
            if hoists:
                raise NotReady({"_"}, modifier.span)
        plain = ast.Literal(span=lit.span, negated=lit.negated, expr=lit.expr)
        inner = self.literal(plain, scope)(_final)

        def build(nxt: Step) -> Step:
            def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
                new_input, new_data = ctx.input, ctx.data
                overrides = dict(ctx.overrides or {})
                for (root, path), fn in zip(targets, values, strict=True):
                    v = fn(ctx, f)
                    if v is UNDEFINED:
                        return False
                    if root == "input":
                        new_input = set_path(new_input, path, v)
                    elif root == "rule":
                        overrides[path] = v
                    else:
                        new_data = set_path(new_data, path, v)
                child = ctx.child(new_input, new_data, overrides or None)

                def resume(_child: Ctx, f2: Frame) -> bool:
                    return nxt(ctx, f2, k)

                return inner(child, f, resume)

            return step

        return build

    def with_target(self, modifier: ast.With) -> tuple[str, tuple[Any, ...]]:
        target = modifier.target
        head = target.head if isinstance(target, ast.Ref) else target
        path_terms = target.path if isinstance(target, ast.Ref) else ()
        path = tuple(constant(p) for p in path_terms)
        if not isinstance(head, ast.Var) or head.name not in ("input", "data") or MISSING in path:
            self.problem(
                COMPILE_ERROR,
                "`with` can only replace `input`, `input.<path>` or `data.<path>`",
                modifier.span,
            )
            return ("input", ())
        if head.name == "input":
            return ("input", path)
        full = ("data", *path)
        for i in range(len(full), 0, -1):
            if full[:i] in self.index.groups or (i == len(full) and full in self.index.namespaces):
                return ("rule", full)
        return ("data", path)

    def expr(self, expr: ast.Expr, scope: Scope) -> Builder:
        if isinstance(expr, ast.SomeVars):
            for var in expr.names:
                scope.bound.pop(var.name, None)
                scope.declared.add(var.name)
            return _NOOP
        if isinstance(expr, ast.SomeIn):
            return self.some_in(expr, scope)
        if isinstance(expr, ast.Every):
            return self.every(expr, scope)
        if isinstance(expr, ast.Assign):
            return self.assign(expr, scope)
        if isinstance(expr, ast.Unify):
            return self.unify(expr.left, expr.right, scope)
        if isinstance(expr, ast.Call):
            relational = self.relational_call(expr, scope)
            if relational is not None:
                return relational
        hoists: list[Builder] = []
        return self.with_hoists(hoists, Stmt(self.test(expr, scope, hoists)))

    def test(self, term: ast.Term, scope: Scope, hoists: list[Builder]) -> Direct:
        """A condition: true when the term is defined and not `false`."""
        if isinstance(term, ast.BinOp) and term.op not in ("==", "!="):
            left = self.value(term.left, scope, hoists)
            right = self.value(term.right, scope, hoists)
            op = self.builtins[_OPERATORS[term.op]]
            return self.builtin_call(op, [left, right], term.span, test=True)
        if isinstance(term, ast.BinOp) and term.op in ("==", "!="):
            args = [self.value(term.left, scope, hoists), self.value(term.right, scope, hoists)]
            return self.equality(term.op, args, term.span, test=True)
        if isinstance(term, ast.Call):
            kind, target = self.resolve_call(term.name, scope)
            if kind == "builtin" and len(term.args) == target.arity:
                args = [self.value(a, scope, hoists) for a in term.args]
                return self.builtin_call(target, args, term.span, test=True)
        fn = self.value(term, scope, hoists)

        def holds(ctx: Ctx, f: Frame) -> bool:
            v = fn(ctx, f)
            return v is not UNDEFINED and v is not False

        return holds

    @staticmethod
    def with_hoists(hoists: list[Builder], last: Builder) -> Builder:
        if not hoists:
            return last
        all_builders = [*hoists, last]
        return lambda nxt: _chain(all_builders, nxt)

    def relational_call(self, call: ast.Call, scope: Scope) -> Builder | None:
        arity = self.call_arity(call, scope)
        if arity is None or len(call.args) != arity + 1:
            return None
        head = ast.Call(span=call.span, name=call.name, args=call.args[:-1])
        return self.unify(head, call.args[-1], scope)

    def assign(self, expr: ast.Assign, scope: Scope) -> Builder:
        hoists: list[Builder] = []
        fn = self.value(expr.value, scope, hoists)
        for name in term_vars(expr.target):
            if name != "_":
                scope.bound.pop(name, None)
                scope.declared.add(name)
        matcher = self.pattern(expr.target, scope)
        return self.with_hoists(hoists, _match_step(fn, matcher))

    def has_pattern_vars(self, term: ast.Term, scope: Scope) -> bool:
        if isinstance(term, ast.Var):
            return term.name == "_" or (scope.is_local(term.name) and term.name not in scope.bound)
        if isinstance(term, ast.ArrayTerm):
            return any(self.has_pattern_vars(t, scope) for t in term.items)
        if isinstance(term, ast.ObjectTerm):
            return any(self.has_pattern_vars(i.value, scope) for i in term.items)
        return False

    def unify(self, left: ast.Term, right: ast.Term, scope: Scope) -> Builder:
        left_open = self.has_pattern_vars(left, scope)
        right_open = self.has_pattern_vars(right, scope)
        if left_open and right_open:
            if (
                isinstance(left, ast.ArrayTerm)
                and isinstance(right, ast.ArrayTerm)
                and len(left.items) == len(right.items)
            ):
                parts = [
                    self.unify(a, b, scope) for a, b in zip(left.items, right.items, strict=True)
                ]
                return _conjunction(parts)
            if isinstance(left, ast.ObjectTerm) and isinstance(right, ast.ObjectTerm):
                return self.unify_objects(left, right, scope)
            names = {
                n for n in term_vars((left, right)) if n not in scope.bound and scope.is_local(n)
            }
            raise NotReady(names, left.span)
        if not left_open and not right_open:
            both: list[Builder] = []
            left_fn = self.value(left, scope, both)
            right_fn = self.value(right, scope, both)

            def same(ctx: Ctx, f: Frame) -> Any:
                a, b = left_fn(ctx, f), right_fn(ctx, f)
                return a is not UNDEFINED and b is not UNDEFINED and equal(a, b)

            return self.with_hoists(both, _truthy_step(same))
        source, target = (right, left) if left_open else (left, right)
        hoists: list[Builder] = []
        fn = self.value(source, scope, hoists)
        matcher = self.pattern(target, scope)
        return self.with_hoists(hoists, _match_step(fn, matcher))

    def unify_objects(self, left: ast.ObjectTerm, right: ast.ObjectTerm, scope: Scope) -> Builder:
        left_keys = [constant(i.key) for i in left.items]
        right_keys = [constant(i.key) for i in right.items]
        if MISSING in left_keys or MISSING in right_keys:
            raise NotReady({"_"}, left.span)
        right_by_key = {freeze(k): i.value for k, i in zip(right_keys, right.items, strict=True)}
        if len(left_keys) != len(right_keys) or set(map(freeze, left_keys)) != set(right_by_key):
            return Stmt(_never)
        parts = [
            self.unify(i.value, right_by_key[freeze(key)], scope)
            for key, i in zip(left_keys, left.items, strict=True)
        ]
        return _conjunction(parts)

    def some_in(self, expr: ast.SomeIn, scope: Scope) -> Builder:
        hoists: list[Builder] = []
        coll = self.value(expr.collection, scope, hoists)
        for name in term_vars((expr.key, expr.value)):
            if name != "_":
                scope.bound.pop(name, None)
                scope.declared.add(name)
        simple = [
            t is None or (isinstance(t, ast.Var) and t.name not in scope.bound)
            for t in (expr.key, expr.value)
        ]
        if all(simple):
            key = expr.key
            assert key is None or isinstance(key, ast.Var)
            key_slot = 0 if key is None or key.name == "_" else scope.bind(key.name)
            value = expr.value
            assert isinstance(value, ast.Var)
            val_slot = scope.layout.new_slot() if value.name == "_" else scope.bind(value.name)
            return self.with_hoists(hoists, IterStmt(coll, key_slot, val_slot))
        key_matcher = self.pattern(expr.key, scope) if expr.key is not None else None
        value_matcher = self.pattern(expr.value, scope)

        def build(nxt: Step) -> Step:
            def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
                for key, val in iterate(coll(ctx, f)):
                    ctx.steps -= 1
                    if ctx.steps < 0:
                        ctx.spend(0)
                    if key_matcher is not None and not key_matcher(ctx, f, key):
                        continue
                    if value_matcher(ctx, f, val) and nxt(ctx, f, k):
                        return True
                return False

            return step

        return self.with_hoists(hoists, build)

    def every(self, expr: ast.Every, scope: Scope) -> Builder:
        hoists: list[Builder] = []
        domain = self.value(expr.domain, scope, hoists)
        inner = scope.copy()
        key_slot = inner.bind(expr.key.name) if expr.key is not None else 0
        val_slot = inner.bind(expr.value.name)
        body = _chain(self.body(expr.body, inner, set()))

        def holds(ctx: Ctx, f: Frame) -> bool:
            for key, val in iterate(domain(ctx, f)):
                if key_slot:
                    f[key_slot] = key
                f[val_slot] = val
                if not body(ctx, f, _stop):
                    return False
            return True

        return self.with_hoists(hoists, Stmt(holds))

    # ---- patterns ------------------------------------------------------------------------

    def pattern(self, term: ast.Term, scope: Scope) -> Matcher:
        """A matcher binding the term's unbound variables; bound parts compare by value."""
        if isinstance(term, ast.Var) and (term.name == "_" or self.is_unbound_local(term, scope)):
            if term.name == "_":
                return lambda ctx, f, v: True
            slot = scope.bind(term.name)

            def bind(ctx: Ctx, f: Frame, v: Any) -> bool:
                f[slot] = v
                return True

            return bind
        if isinstance(term, ast.ArrayTerm) and self.has_pattern_vars(term, scope):
            return self.array_pattern(term, scope)
        if isinstance(term, ast.ObjectTerm) and self.has_pattern_vars(term, scope):
            return self.object_pattern(term, scope)
        hoists: list[Builder] = []
        fn = self.value(term, scope, hoists)
        if hoists:
            return self.generated_pattern(hoists, fn)
        const = constant(term)
        if isinstance(const, str):
            return lambda ctx, f, v: v == const and type(v) is str
        return lambda ctx, f, v: equal(fn(ctx, f), v)

    def is_unbound_local(self, var: ast.Var, scope: Scope) -> bool:
        return scope.is_local(var.name) and var.name not in scope.bound

    @staticmethod
    def generated_pattern(hoists: list[Builder], fn: ValueFn) -> Matcher:
        # The pattern iterates (`x = data.a[i]` with `i` unbound on the right):
        # succeed if any generated value equals; keep the generating bindings.
        found: list[Any] = []

        def remember(ctx: Ctx, f: Frame, k: Cont) -> bool:
            return equal(fn(ctx, f), found[-1])

        run = _chain(hoists, remember)

        def match(ctx: Ctx, f: Frame, v: Any) -> bool:
            found.append(v)
            try:
                return run(ctx, f, _stop)
            finally:
                found.pop()

        return match

    def array_pattern(self, term: ast.ArrayTerm, scope: Scope) -> Matcher:
        matchers = [self.pattern(item, scope) for item in term.items]
        size = len(matchers)

        def match(ctx: Ctx, f: Frame, v: Any) -> bool:
            if not isinstance(v, tuple | list) or len(v) != size:
                return False
            return all(m(ctx, f, item) for m, item in zip(matchers, v, strict=True))

        return match

    def object_pattern(self, term: ast.ObjectTerm, scope: Scope) -> Matcher:
        keys: list[ValueFn] = []
        for item in term.items:
            hoists: list[Builder] = []
            keys.append(self.value(item.key, scope, hoists))
            if hoists:
                raise NotReady({"_"}, item.span)
        matchers = [self.pattern(item.value, scope) for item in term.items]
        size = len(matchers)

        def match(ctx: Ctx, f: Frame, v: Any) -> bool:
            if not isinstance(v, dict) or len(v) != size:
                return False
            for key_fn, m in zip(keys, matchers, strict=True):
                item = index_value(v, key_fn(ctx, f))
                if item is UNDEFINED or not m(ctx, f, item):
                    return False
            return True

        return match

    # ---- values --------------------------------------------------------------------------

    def value(self, term: ast.Term, scope: Scope, hoists: list[Builder]) -> ValueFn:
        const = constant(term)
        if const is not MISSING:
            if isinstance(const, FrozenDict):
                const = dict(const)
            const_fn: ValueFn = lambda ctx, f: const  # noqa: E731
            self._known[id(const_fn)] = ("const", const, const_fn)
            return const_fn
        if isinstance(term, ast.Var):
            return self.var_value(term, scope, hoists)
        if isinstance(term, ast.Ref):
            return self.ref_value(term, scope, hoists)
        if isinstance(term, ast.BinOp):
            return self.binop(term, scope, hoists)
        if isinstance(term, ast.UnaryMinus):
            zero = ast.NumberLit(span=term.span, text="0")
            return self.binop(
                ast.BinOp(span=term.span, op="-", left=zero, right=term.operand), scope, hoists
            )
        if isinstance(term, ast.Call):
            return self.call(term, scope, hoists)
        if isinstance(term, ast.Membership):
            return self.membership(term, scope, hoists)
        if isinstance(term, ast.ArrayTerm | ast.SetTerm | ast.ObjectTerm):
            return self.collection(term, scope, hoists)
        return self.comprehension(term, scope)

    def slot_reader(self, slot: int) -> ValueFn:
        read: ValueFn = lambda ctx, f: f[slot]  # noqa: E731
        self._known[id(read)] = ("slot", slot, read)
        return read

    def var_value(self, var: ast.Var, scope: Scope, hoists: list[Builder]) -> ValueFn:
        name = var.name
        slot = scope.bound.get(name)
        if slot is not None:
            return self.slot_reader(slot)
        if not scope.is_local(name):
            return self.path_value(self.global_path(name, scope), (), scope, hoists, var.span)
        raise NotReady({name}, var.span)

    @staticmethod
    def global_path(name: str, scope: Scope) -> tuple[str, ...]:
        if name in ("input", "data"):
            return (name,)
        return scope.globals[name]

    def ref_value(self, ref: ast.Ref, scope: Scope, hoists: list[Builder]) -> ValueFn:
        head = ref.head
        if (
            isinstance(head, ast.Var)
            and head.name not in scope.bound
            and not scope.is_local(head.name)
        ):
            return self.path_value(
                self.global_path(head.name, scope), ref.path, scope, hoists, ref.span
            )
        base = self.value(head, scope, hoists)
        return self.apply_path(base, ref.path, scope, hoists)

    def path_value(
        self,
        root: tuple[str, ...],
        items: tuple[ast.Term, ...],
        scope: Scope,
        hoists: list[Builder],
        span: Span,
    ) -> ValueFn:
        """A ref rooted at `input` or `data`, resolved against the rule tree now."""
        consts = [constant(t) for t in items]
        if root[0] == "input":
            prefix = root[1:]
            return self.apply_path(
                _input_root, tuple(_str_terms(prefix, span)) + items, scope, hoists
            )
        node: tuple[Any, ...] = root
        position = 0
        while True:
            if node in self.index.groups:
                group = self.index.groups[node]
                if group.kind == "function":
                    self.problem(
                        TYPE_ERROR,
                        f"function `{'.'.join(node[1:])}` must be called with arguments",
                        span,
                    )
                    return lambda ctx, f: UNDEFINED
                fixed = self.constant_rule(node)
                if fixed is not MISSING:
                    base = self.constant_fn(fixed)
                    return self.apply_path(base, items[position:], scope, hoists)
                return self.apply_path(self.rule(node), items[position:], scope, hoists)
            key = consts[position] if position < len(consts) else MISSING
            if node in self.index.namespaces or node == ("data",):
                if isinstance(key, str) and key in self.index.children(node):
                    node = (*node, key)
                    position += 1
                    continue
                if isinstance(key, str) or (key is not MISSING and position < len(items)):
                    break  # a base-data path below a namespace
                namespace = self.namespace(node)
                return self.apply_path(namespace, items[position:], scope, hoists)
            break
        data_path = node[1:]
        return self.apply_path(
            _data_root,
            tuple(_str_terms(data_path, span)) + items[position:],
            scope,
            hoists,
        )

    def apply_path(
        self, base: ValueFn, items: tuple[ast.Term, ...], scope: Scope, hoists: list[Builder]
    ) -> ValueFn:
        fn = base
        pending_keys: list[Any] = []
        for item in items:
            const = constant(item)
            if const is not MISSING:
                pending_keys.append(freeze(const))
                continue
            fn = _walk(fn, tuple(pending_keys), self._code_cache)
            pending_keys = []
            if isinstance(item, ast.Var) and (
                item.name == "_" or self.is_unbound_local(item, scope)
            ):
                key_slot = 0 if item.name == "_" else scope.bind(item.name)
                val_slot = scope.layout.new_slot()
                hoists.append(_iter_step(fn, key_slot, val_slot))
                fn = _slot_reader(val_slot)
                continue
            if self.has_pattern_vars(item, scope):
                key_matcher = self.pattern(item, scope)
                val_slot = scope.layout.new_slot()
                hoists.append(_iter_match_step(fn, key_matcher, val_slot))
                fn = _slot_reader(val_slot)
                continue
            key_fn = self.value(item, scope, hoists)
            fn = _dynamic_index(fn, key_fn)
        return _walk(fn, tuple(pending_keys), self._code_cache)

    def binop(self, term: ast.BinOp, scope: Scope, hoists: list[Builder]) -> ValueFn:
        left = self.value(term.left, scope, hoists)
        right = self.value(term.right, scope, hoists)
        if term.op in ("==", "!="):
            return self.equality(term.op, [left, right], term.span, test=False)
        return self.builtin_call(self.builtins[_OPERATORS[term.op]], [left, right], term.span)

    def equality(self, op: str, args: list[ValueFn], span: Span, test: bool) -> ValueFn:
        """`==` / `!=`: strings compare inline, everything else by Rego equality."""
        fn = equal if op == "==" else _not_equal
        return self.builtin_call(
            Builtin(name=op, arity=2, fn=fn), args, span, test=test, string_op=op
        )

    def membership(self, term: ast.Membership, scope: Scope, hoists: list[Builder]) -> ValueFn:
        value = self.value(term.value, scope, hoists)
        coll = self.value(term.collection, scope, hoists)
        key = self.value(term.key, scope, hoists) if term.key is not None else None

        def contains(ctx: Ctx, f: Frame) -> Any:
            v = value(ctx, f)
            c = coll(ctx, f)
            if v is UNDEFINED or c is UNDEFINED:
                return UNDEFINED
            if key is not None:
                kv = key(ctx, f)
                if kv is UNDEFINED:
                    return UNDEFINED
                found = index_value(c, kv)
                return found is not UNDEFINED and not isinstance(c, frozenset) and equal(found, v)
            if isinstance(c, frozenset):
                try:
                    return freeze(v) in c
                except TypeError:
                    return False
            values = c.values() if isinstance(c, dict) else c if isinstance(c, list | tuple) else ()
            return any(equal(v, item) for item in values)

        return contains

    def collection(
        self,
        term: ast.ArrayTerm | ast.SetTerm | ast.ObjectTerm,
        scope: Scope,
        hoists: list[Builder],
    ) -> ValueFn:
        if isinstance(term, ast.ObjectTerm):
            pairs = [
                (self.value(i.key, scope, hoists), self.value(i.value, scope, hoists))
                for i in term.items
            ]
            span = term.span

            def make_object(ctx: Ctx, f: Frame) -> Any:
                out: dict[Any, Any] = {}
                for key_fn, val_fn in pairs:
                    key, val = key_fn(ctx, f), val_fn(ctx, f)
                    if key is UNDEFINED or val is UNDEFINED:
                        return UNDEFINED
                    key = freeze(key)
                    if key in out and not equal(out[key], val):
                        raise EvalError(CONFLICT_ERROR, "object keys must be unique", span)
                    out[key] = val
                return out

            return make_object
        items = [self.value(t, scope, hoists) for t in term.items]
        is_set = isinstance(term, ast.SetTerm)

        def make(ctx: Ctx, f: Frame) -> Any:
            values = [fn(ctx, f) for fn in items]
            if any(v is UNDEFINED for v in values):
                return UNDEFINED
            return frozenset(map(freeze, values)) if is_set else tuple(values)

        return make

    def comprehension(self, term: ast.Term, scope: Scope) -> ValueFn:
        inner = scope.copy()
        assert isinstance(term, ast.ArrayCompr | ast.SetCompr | ast.ObjectCompr)
        head_terms: tuple[ast.Term, ...] = (
            (term.key, term.value) if isinstance(term, ast.ObjectCompr) else (term.term,)
        )
        body_builders = self.body(term.body, inner, set(term_vars(head_terms)))
        hoists: list[Builder] = []
        heads = [self.value(t, inner, hoists) for t in head_terms]
        acc_slot = inner.layout.new_slot()
        span = term.span

        if isinstance(term, ast.ObjectCompr):
            key_fn, val_fn = heads

            def collect_pair(ctx: Ctx, f: Frame, k: Cont) -> bool:
                key, val = key_fn(ctx, f), val_fn(ctx, f)
                if key is not UNDEFINED and val is not UNDEFINED:
                    acc = f[acc_slot]
                    key = freeze(key)
                    if key in acc and not equal(acc[key], val):
                        raise EvalError(CONFLICT_ERROR, "object keys must be unique", span)
                    acc[key] = val
                return False

            collect: Step = collect_pair
        else:
            (item_fn,) = heads

            def collect_item(ctx: Ctx, f: Frame, k: Cont) -> bool:
                v = item_fn(ctx, f)
                if v is not UNDEFINED:
                    f[acc_slot].append(v)
                return False

            collect = collect_item
        run = _chain([*body_builders, *hoists], collect)
        kind = type(term)

        def evaluate(ctx: Ctx, f: Frame) -> Any:
            f[acc_slot] = {} if kind is ast.ObjectCompr else []
            run(ctx, f, _go_on)
            result = f[acc_slot]
            if kind is ast.ArrayCompr:
                return tuple(result)
            if kind is ast.SetCompr:
                return frozenset(map(freeze, result))
            return result

        return evaluate

    # ---- calls ---------------------------------------------------------------------------

    def resolve_call(self, name: tuple[str, ...], scope: Scope | None) -> tuple[str, Any]:
        """("builtin", Builtin) | ("function", path) | ("unknown", None)."""
        if scope is not None and name[0] in scope.globals and name[0] not in scope.bound:
            full = (*scope.globals[name[0]], *name[1:])
            if full in self.index.groups:
                return ("function", full)
        if name[0] == "data" and name in self.index.groups:
            return ("function", name)
        dotted = ".".join(name)
        if dotted in self.builtins:
            return ("builtin", self.builtins[dotted])
        return ("unknown", None)

    def call_arity(self, call: ast.Call, scope: Scope | None = None) -> int | None:
        kind, target = self.resolve_call(call.name, scope)
        if kind == "builtin":
            arity: int = target.arity
            return arity
        if kind == "function":
            return self.index.groups[target].arity
        return None

    def call(self, term: ast.Call, scope: Scope, hoists: list[Builder]) -> ValueFn:
        kind, target = self.resolve_call(term.name, scope)
        name = ".".join(term.name)
        args = [self.value(a, scope, hoists) for a in term.args]
        if kind == "unknown":
            self.problem(TYPE_ERROR, f"unknown function `{name}`", term.span)
            return lambda ctx, f: UNDEFINED
        arity = target.arity if kind == "builtin" else self.index.groups[target].arity
        if len(args) != arity:
            self.problem(
                TYPE_ERROR,
                f"`{name}` takes {arity} argument{'s' if arity != 1 else ''} "
                f"but is given {len(args)}",
                term.span,
            )
            return lambda ctx, f: UNDEFINED
        if kind == "builtin":
            return self.builtin_call(target, args, term.span)
        group = self.index.groups[target]
        if group.kind != "function":
            self.problem(TYPE_ERROR, f"`{name}` is a rule, not a function", term.span)
            return lambda ctx, f: UNDEFINED
        func = self.function(target)

        def call_user(ctx: Ctx, f: Frame) -> Any:
            values = tuple(a(ctx, f) for a in args)
            if UNDEFINED in values:
                return UNDEFINED
            return func(ctx, values)

        return call_user

    def builtin_call(
        self,
        builtin: Builtin,
        args: list[ValueFn],
        span: Span,
        test: bool = False,
        string_op: str | None = None,
    ) -> ValueFn:
        """A call site specialised by generated code: constant and variable
        arguments are read inline, only other arguments cost a call.

        With `test`, the function answers whether the call is true (defined and
        not false), for statements used as conditions.
        """

        def failed(ctx: Ctx, exc: BuiltinError) -> Any:
            if ctx.strict:
                raise EvalError(exc.code, exc.message, span) from None
            return UNDEFINED

        env: dict[str, Any] = {
            "fn": builtin.fn, "U": UNDEFINED, "failed": failed, "BuiltinError": BuiltinError,
        }  # fmt: skip
        lines: list[str] = []
        checks: list[str] = []
        operands: list[str] = []
        for i, arg in enumerate(args):
            known = self._known.get(id(arg))
            if known is not None and known[0] == "const":
                env[f"c{i}"] = known[1]
                operands.append(f"c{i}")
            elif known is not None and known[0] == "slot":
                operands.append(f"f[{known[1]}]")
            else:
                env[f"a{i}"] = arg
                lines.append(f"    x{i} = a{i}(ctx, f)")
                checks.append(f"x{i} is U")
                operands.append(f"x{i}")
        if checks:
            lines.append(f"    if {' or '.join(checks)}:")
            lines.append("        return False" if test else "        return U")
        if string_op is not None:  # `==`/`!=` on two strings needs no equality function
            a, b = operands
            lines.append(f"    if type({a}) is str and type({b}) is str:")
            lines.append(f"        return {a} {string_op} {b}")
        lines.append("    try:")
        lines.append(f"        r = fn({', '.join(operands)})")
        lines.append("    except BuiltinError as exc:")
        lines.append(
            "        return failed(ctx, exc) is not U"
            if test
            else "        return failed(ctx, exc)"
        )
        lines.append("    return r is not False and r is not U" if test else "    return r")
        source = "def call(ctx, f):\n" + "\n".join(lines) + "\n"
        call: ValueFn = generate(source, env, self._code_cache)
        return call

    # ---- rules ---------------------------------------------------------------------------

    def rule(self, path: tuple[str, ...]) -> RuleFn:
        """The memoised evaluator of the rule group at `path` (compiled on first use)."""
        found = self._rules.get(path)
        if found is not None:
            return found
        group = self.index.groups[path]
        self._ids += 1
        rule_id = self._ids
        compute = self.compute_group(group)
        single = self._single_clauses.get(compute)
        if single is not None:
            clause, size = single

            def evaluate(ctx: Ctx, _frame: Frame | None = None) -> Any:
                if ctx.overrides is not None and path in ctx.overrides:
                    return ctx.overrides[path]
                cache = ctx.cache
                value = cache.get(rule_id, MISSING)
                if value is MISSING:
                    value = clause(ctx, [None] * size)
                    cache[rule_id] = value
                return value

        else:

            def evaluate(ctx: Ctx, _frame: Frame | None = None) -> Any:
                if ctx.overrides is not None and path in ctx.overrides:
                    return ctx.overrides[path]
                cache = ctx.cache
                value = cache.get(rule_id, MISSING)
                if value is MISSING:
                    value = compute(ctx)
                    cache[rule_id] = value
                return value

        self._rules[path] = evaluate
        return evaluate

    def constant_rule(self, path: tuple[str, ...]) -> Any:
        """The value of a rule that is a plain constant (`p := [1, 2]`), or MISSING.

        Such rules are inlined at their references, unless some `with` statement
        could replace rule values.
        """
        group = self.index.groups[path]
        if self.rules_replaceable or group.kind != "complete" or group.default is not None:
            return MISSING
        if len(group.definitions) != 1:
            return MISSING
        rule = group.definitions[0][1]
        if not isinstance(rule, ast.CompleteRule) or rule.body or rule.elses or rule.value is None:
            return MISSING
        value = constant(rule.value)
        return dict(value) if isinstance(value, FrozenDict) else value

    def constant_fn(self, value: Any) -> ValueFn:
        const_fn: ValueFn = lambda ctx, f: value  # noqa: E731
        self._known[id(const_fn)] = ("const", value, const_fn)
        return const_fn

    def compute_group(self, group: RuleGroup) -> RuleFn:
        definitions = [self.definition(module, rule) for module, rule in group.definitions]
        default = MISSING
        if group.default is not None:
            default = self.default_value(group.default)
        span = group.definitions[0][1].span if group.definitions else None
        name = ".".join(group.path[1:])
        if group.kind == "set":

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

        if len(definitions) == 1 and default is MISSING:
            return definitions[0]
        return compute_complete

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
            return _first_defined(runners, scope.layout, self._single_clauses)
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
        return _chain(hoists, last)

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
            head_hoists: list[Builder] = []
            try:
                head_fn = self.value(term, scope.copy(), head_hoists)
            except NotReady:
                head_hoists = [_NOOP]  # reported by the general path below
            if not head_hoists:
                if stop_at_first:
                    if isinstance(const, FrozenDict):
                        const = dict(const)
                    fixed = const
                    return lambda ctx, f: fixed if direct(ctx, f) else UNDEFINED
                return lambda ctx, f: head_fn(ctx, f) if direct(ctx, f) else UNDEFINED

        def collect(f: Frame, v: Any) -> bool:
            acc = f[0]
            if acc is MISSING:
                f[0] = v
                return stop_at_first
            if not equal(acc, v):
                raise EvalError(CONFLICT_ERROR, conflict, span)
            return False

        run = _chain(builders, self.head((term,), scope, collect, span))

        def enumerate_solutions(ctx: Ctx, f: Frame) -> Any:
            f[0] = MISSING
            run(ctx, f, _go_on)
            v = f[0]
            return UNDEFINED if v is MISSING else v

        return enumerate_solutions

    def set_definition(self, rule: ast.PartialSetRule, scope: Scope) -> RuleFn:
        builders = self.safe_body(rule.body, scope, set(term_vars(rule.element)))

        def collect(f: Frame, v: Any) -> bool:
            f[0].add(freeze(v))
            return False

        run = _chain(builders, self.head((rule.element,), scope, collect, rule.span))
        layout = scope.layout

        def evaluate(ctx: Ctx) -> Any:
            f: Frame = [None] * layout.size
            f[0] = set()
            run(ctx, f, _go_on)
            return f[0]

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

        run = _chain(builders, self.head((rule.key, value), scope, collect, span))
        layout = scope.layout

        def evaluate(ctx: Ctx) -> Any:
            f: Frame = [None] * layout.size
            f[0] = {}
            run(ctx, f, _go_on)
            return f[0]

        return evaluate

    # ---- functions -----------------------------------------------------------------------

    def function(self, path: tuple[str, ...]) -> FuncFn:
        found = self._funcs.get(path)
        if found is not None:
            return found
        group = self.index.groups[path]
        definitions = [
            self.function_definition(m, r)
            for m, r in group.definitions
            if isinstance(r, ast.FunctionRule)
        ]
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

        self._funcs[path] = call
        return call

    def function_definition(self, module: ast.Module, rule: ast.FunctionRule) -> FuncFn:
        scope = self.module_scope(module)
        for name in term_vars(rule.args):
            scope.declared.add(name)
        try:
            matchers = [self.pattern(arg, scope) for arg in rule.args]
        except NotReady as exc:
            self.unsafe(exc)
            return lambda ctx, args: UNDEFINED
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

        def evaluate(ctx: Ctx, args: tuple[Any, ...]) -> Any:
            f: Frame = [None] * layout.size
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
            return found
        children: list[tuple[str, RuleFn]] = []
        for name in sorted(self.index.children(path)):
            child = (*path, name)
            group = self.index.groups.get(child)
            if group is not None:
                if group.kind != "function":
                    children.append((name, self.rule(child)))
            else:
                children.append((name, self.namespace(child)))
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
        return CompiledQuery(_chain(builders), scope.layout, outputs)


def _first_defined(
    clauses: list[ClauseFn], layout: Layout, singles: dict[RuleFn, tuple[ClauseFn, int]]
) -> RuleFn:
    """The first defined clause value (`else` chains); single clauses are
    recorded in `singles` so the memoising wrapper can call them directly."""
    size = layout.size
    if len(clauses) == 1:
        (clause,) = clauses

        def evaluate_one(ctx: Ctx) -> Any:
            return clause(ctx, [None] * size)

        singles[evaluate_one] = (clause, size)
        return evaluate_one

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


def _str_terms(keys: tuple[str, ...], span: Span) -> list[ast.Term]:
    return [ast.StringLit(span=span, value=k) for k in keys]


def _slot_reader(slot: int) -> ValueFn:
    return lambda ctx, f: f[slot]


def _replaces_data(node: object) -> bool:
    """Whether a `with data.…` statement occurs anywhere under the node."""
    if isinstance(node, ast.With):
        target = node.target.head if isinstance(node.target, ast.Ref) else node.target
        return isinstance(target, ast.Var) and target.name == "data"
    if isinstance(node, tuple):
        return any(_replaces_data(item) for item in node)
    fields = getattr(node, "__struct_fields__", None)
    if fields is None or isinstance(node, ast.Var | ast.StringLit | ast.NumberLit):
        return False
    return any(_replaces_data(getattr(node, name)) for name in fields if name != "span")


def _not_equal(a: Any, b: Any) -> bool:
    return not equal(a, b)


def _input_root(ctx: Ctx, f: Frame) -> Any:
    return ctx.input


def _data_root(ctx: Ctx, f: Frame) -> Any:
    return ctx.data


def generate(source: str, env: dict[str, Any], code_cache: dict[str, CodeType]) -> Any:
    """Define the one function in `source` with `env` as its globals.

    The source comes only from this module's templates (names and slot numbers,
    never policy text); values reach it through `env`. Identical templates are
    compiled once per compiler.
    """
    code = code_cache.get(source)
    if code is None:
        code = code_cache[source] = compile(source, "<policy_engine generated>", "exec")
    exec(code, env)  # noqa: S102 - our own template, see above
    (name,) = [key for key in env if key in ("call", "get")]
    return env[name]


def _root_walk(root: str, keys: tuple[Any, ...], code_cache: dict[str, CodeType]) -> ValueFn:
    """`ctx.input` / `ctx.data` followed by constant keys, as straight-line code."""
    env: dict[str, Any] = {"U": UNDEFINED, "index_value": index_value}
    lines = [f"    v = ctx.{root}"]
    for i, key in enumerate(keys):
        env[f"k{i}"] = key
        lines.append(f"    v = v.get(k{i}, U) if type(v) is dict else index_value(v, k{i})")
        if i < len(keys) - 1:
            lines.append("    if v is U:\n        return U")
    source = "def get(ctx, f):\n" + "\n".join(lines) + "\n    return v\n"
    get: ValueFn = generate(source, env, code_cache)
    return get


def _walk(fn: ValueFn, keys: tuple[Any, ...], code_cache: dict[str, CodeType]) -> ValueFn:
    if not keys:
        return fn
    if fn is _input_root:
        return _root_walk("input", keys, code_cache)
    if fn is _data_root:
        return _root_walk("data", keys, code_cache)
    if len(keys) == 1:
        (key,) = keys

        def get1(ctx: Ctx, f: Frame) -> Any:
            v = fn(ctx, f)
            if type(v) is dict:
                return v.get(key, UNDEFINED)
            return index_value(v, key)

        return get1

    def get(ctx: Ctx, f: Frame) -> Any:
        v = fn(ctx, f)
        for key in keys:
            v = v.get(key, UNDEFINED) if type(v) is dict else index_value(v, key)
            if v is UNDEFINED:
                return v
        return v

    return get


def _dynamic_index(fn: ValueFn, key_fn: ValueFn) -> ValueFn:
    def get(ctx: Ctx, f: Frame) -> Any:
        v = fn(ctx, f)
        key = key_fn(ctx, f)
        if v is UNDEFINED or key is UNDEFINED:
            return UNDEFINED
        return index_value(v, key)

    return get
