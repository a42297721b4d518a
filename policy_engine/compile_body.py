"""Compiling statements and bodies: ordering for safety, `not`, `with`,
unification, `some … in`, `every`."""

from __future__ import annotations

from typing import Any, cast

from policy_engine import ast
from policy_engine.builtins import Builtin, BuiltinError
from policy_engine.codegen import generate
from policy_engine.compile_calls import MOCK_ROOTS, CallCompiler
from policy_engine.compile_terms import ref_name
from policy_engine.errors import COMPILE_ERROR, EvalError
from policy_engine.relations import RELATIONS
from policy_engine.runtime import (
    COLLECTIONS,
    MISSING,
    Cont,
    Ctx,
    Frame,
    Step,
    ValueFn,
    iterate,
    set_path,
)
from policy_engine.steps import (
    NOOP,
    OPERATORS,
    Builder,
    Direct,
    IterStmt,
    Stmt,
    chain,
    conjunction,
    constant,
    final_step,
    match_step,
    never,
    stop,
    truthy_step,
)
from policy_engine.terms import NotReady, Scope, term_vars
from policy_engine.values import UNDEFINED, equal, freeze

__all__ = ["BodyCompiler"]


class BodyCompiler(CallCompiler):
    """Compiles bodies into chains of statement builders."""

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
        guards = self.negation_guards(expr, scope)
        builder = self.negation(expr, scope)
        if not guards:
            return builder
        holds = builder.direct

        def guarded(ctx: Ctx, f: Frame) -> bool:
            # OPA evaluates these terms before the `not`: one undefined fails the statement.
            for guard in guards:
                if guard(ctx, f) is UNDEFINED:
                    return False
            return holds(ctx, f)

        return Stmt(guarded)

    def negation_guards(self, expr: ast.Expr, scope: Scope) -> list[ValueFn]:
        """The terms OPA's compiler moves out of a negated statement (see `hoisted_terms`)."""
        guards: list[ValueFn] = []
        for term in hoisted_terms(expr):
            if isinstance(term, ast.Var) and (term.name in scope.bound or term.name == "_"):
                continue  # a local variable's value is always defined
            trial = scope.copy()
            hoists: list[Builder] = []
            try:
                fn = self.value(term, trial, hoists)
            except NotReady:
                continue  # it iterates local variables: it stays under the `not`
            if not hoists:
                guards.append(fn)
        return guards

    def negation(self, expr: ast.Expr, scope: Scope) -> Stmt:
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
            rule_test = self._rule_tests.get(holds)
            if rule_test is not None and not rule_test[3]:
                fill, cache, rule_id, _negated = rule_test
                return Stmt(self.rule_test(fill, cache, rule_id, negated=True))
            return Stmt(lambda ctx, f: not holds(ctx, f))
        inner = builder(final_step)
        return Stmt(lambda ctx, f: not inner(ctx, f, stop))

    def with_literal(self, lit: ast.Literal, scope: Scope) -> Builder:
        self.note_input()  # conservatively: the statement may replace `input`
        targets: list[tuple[str, tuple[Any, ...]]] = []
        values: list[ValueFn] = []
        for modifier in lit.withs:
            target = self.with_target(modifier, scope)
            targets.append(target)
            hoists: list[Builder] = []
            if target[0] == "mock":
                values.append(self.replacement(modifier.value, scope, hoists))
            else:
                values.append(self.value(modifier.value, scope, hoists))
            if hoists:
                raise NotReady({"_"}, modifier.span)
        plain = ast.Literal(span=lit.span, negated=lit.negated, expr=lit.expr)
        inner = self.literal(plain, scope)(final_step)

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
                    elif root == "rule" or root == "mock":
                        overrides[path] = v
                    else:
                        new_data = set_path(new_data, path, v)
                child = ctx.child(new_input, new_data, overrides or None)

                def resume(_child: Ctx, f2: Frame) -> bool:
                    return nxt(ctx, f2, k)

                return inner(child, f, resume)

            return step

        return build

    def with_target(self, modifier: ast.With, scope: Scope) -> tuple[str, tuple[Any, ...]]:
        """("input" | "data" | "rule", path) or ("mock", the function's override key)."""
        target = modifier.target
        head = target.head if isinstance(target, ast.Ref) else target
        path_terms = target.path if isinstance(target, ast.Ref) else ()
        path = tuple(constant(p) for p in path_terms)
        name = ref_name(target)
        if name is not None and name[0] != "input":
            kind, found = self.resolve_call(name, scope)
            if kind == "function" and self.index.groups[found].kind != "function":
                kind = "rule"
            key = self.mock_key(kind, found) if kind in ("builtin", "function") else None
            if key is not None:
                return ("mock", key)
            if kind in ("builtin", "function"):
                self.problem(
                    COMPILE_ERROR,
                    f"`with {'.'.join(name)}` here replaces a function no policy module "
                    "replaces; write this `with` in a module (only the call sites of "
                    "functions some module replaces can be replaced)",
                    modifier.span,
                )
                return ("input", ())
        if not isinstance(head, ast.Var) or head.name not in ("input", "data") or MISSING in path:
            self.problem(
                COMPILE_ERROR,
                "`with` can only replace `input`, `input.<path>`, `data.<path>` or a "
                "function (a built-in or one of the policy's)",
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

    def replacement(self, term: ast.Term, scope: Scope, hoists: list[Builder]) -> ValueFn:
        """What `with <function> as <term>` puts in place of the function: a call of
        another function (a built-in or the policy's) or a value returned for any arguments.

        A replacing function runs without any function replacement in force, as in OPA
        (it may call the function it replaces and get the original).
        """
        name = ref_name(term)
        kind, found = self.resolve_call(name, scope) if name is not None else ("unknown", None)
        if (
            kind == "function"
            and self.index.groups[cast(tuple[str, ...], found)].kind == "function"
        ):
            func = self.function(cast(tuple[str, ...], found))

            def call_function(ctx: Ctx, values: tuple[Any, ...]) -> Any:
                return func(without_mocks(ctx), values)

            return lambda ctx, f: call_function
        if kind == "builtin" and name is not None and name[0] not in scope.bound:
            builtin = cast(Builtin, found)

            def call_builtin(ctx: Ctx, values: tuple[Any, ...]) -> Any:
                try:
                    if builtin.context:
                        return builtin.fn(without_mocks(ctx), *values)
                    return builtin.fn(*values)
                except BuiltinError as exc:
                    if ctx.strict:
                        raise EvalError(exc.code, exc.message, term.span) from None
                    return UNDEFINED

            return lambda ctx, f: call_builtin
        value = self.value(term, scope, hoists)

        def replace_with_value(ctx: Ctx, f: Frame) -> Any:
            v = value(ctx, f)
            if v is UNDEFINED:
                return UNDEFINED
            return lambda _ctx, _values: v

        return replace_with_value

    def expr(self, expr: ast.Expr, scope: Scope) -> Builder:
        if isinstance(expr, ast.SomeVars):
            for var in expr.names:
                scope.bound.pop(var.name, None)
                scope.declared.add(var.name)
            return NOOP
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
            left, right = self.operand_pair(term, scope, hoists)
            op = self.builtins[OPERATORS[term.op]]
            return self.builtin_call(op, [left, right], term.span, test=True)
        if isinstance(term, ast.BinOp) and term.op in ("==", "!="):
            args = list(self.operand_pair(term, scope, hoists))
            return self.equality(term.op, args, term.span, test=True)
        if isinstance(term, ast.Membership) and term.key is None:
            return self.membership(term, scope, hoists, test=True)
        if isinstance(term, ast.Call):
            kind, target = self.resolve_call(term.name, scope)
            mocked = self.mock_key(kind, target) is not None
            if kind == "builtin" and len(term.args) == target.arity and not mocked:
                args = [self.value(a, scope, hoists) for a in term.args]
                return self.builtin_call(target, args, term.span, test=True)
        fn = self.value(term, scope, hoists)
        known = self._known.get(id(fn))
        if known is not None and known[0] == "rule":
            cache, rule_id, fill = known[1]
            return self.rule_test(fill, cache, rule_id)

        # Generated (and so inlinable into generated rule code) when the value is one
        # that generated code reads inline or runs inline.
        if known is not None or fn in self._value_sources:
            env: dict[str, Any] = {"U": UNDEFINED}
            setup, value, _undefined = self.operand_source(fn, 0, env)
            source = "\n".join(
                [
                    "def call(ctx, f):",
                    *setup,
                    f"    return {value} is not U and {value} is not False",
                ]
            )
            truthy: Direct = generate(source + "\n", env, self._code_cache)
            self._test_sources[truthy] = (source + "\n", env)
            return truthy

        def holds(ctx: Ctx, f: Frame) -> bool:
            v = fn(ctx, f)
            return v is not UNDEFINED and v is not False

        return holds

    def operand_pair(
        self, term: ast.BinOp, scope: Scope, hoists: list[Builder]
    ) -> tuple[ValueFn, ValueFn]:
        """Both operands; the right one first when only it can bind what the left reads
        (`foo == input.foos[foo]` iterates the array, then compares, as in OPA)."""
        trial, trial_hoists = scope.copy(), list(hoists)
        try:
            left = self.value(term.left, trial, trial_hoists)
            right = self.value(term.right, trial, trial_hoists)
        except NotReady as first:
            trial, trial_hoists = scope.copy(), list(hoists)
            try:
                right = self.value(term.right, trial, trial_hoists)
                left = self.value(term.left, trial, trial_hoists)
            except NotReady:
                raise first from None
        scope.bound, scope.declared = trial.bound, trial.declared
        hoists[:] = trial_hoists
        return left, right

    def rule_test(self, fill: ValueFn, cache: str, rule_id: int, negated: bool = False) -> Direct:
        """A bare rule reference as a condition (or `not` it), its cache read inline;
        `fill` computes and caches the rule's value on a miss."""
        env = {"U": UNDEFINED, "M": MISSING, "rid": rule_id, "rule": fill}
        verdict = "v is U or v is False" if negated else "v is not U and v is not False"
        source = (
            "def call(ctx, f):\n"
            f"    v = ctx.{cache}[rid]\n"
            "    if v is M:\n"
            "        v = rule(ctx, f)\n"
            f"    return {verdict}\n"
        )
        holds: Direct = generate(source, env, self._code_cache)
        self._rule_tests[holds] = (fill, cache, rule_id, negated)
        return holds

    @staticmethod
    def with_hoists(hoists: list[Builder], last: Builder) -> Builder:
        if not hoists:
            return last
        all_builders = [*hoists, last]
        return lambda nxt: chain(all_builders, nxt)

    def relation_of(self, term: ast.Term, scope: Scope, operands: int = 1) -> Any:
        """The results of a built-in relation called with `operands` operands, else None."""
        if not isinstance(term, ast.Call) or len(term.args) != operands:
            return None
        relation = RELATIONS.get(".".join(term.name))
        if relation is None or self.resolve_call(term.name, scope)[0] == "function":
            return None  # the policy's own function of that name
        return relation

    def relational_call(self, call: ast.Call, scope: Scope) -> Builder | None:
        relation = self.relation_of(call, scope, operands=2)
        if relation is not None:
            return self.relation(relation, call, scope)
        arity = self.call_arity(call, scope)
        if arity is None or len(call.args) != arity + 1:
            return None
        head = ast.Call(span=call.span, name=call.name, args=call.args[:-1])
        return self.unify(head, call.args[-1], scope)

    def relation(self, results: Any, call: ast.Call, scope: Scope) -> Builder:
        """`walk(x, out)`: one solution per result of the relation that matches `out`."""
        hoists: list[Builder] = []
        source = self.value(call.args[0], scope, hoists)
        matcher = self.pattern(call.args[1], scope)

        def build(nxt: Step) -> Step:
            def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
                x = source(ctx, f)
                if x is UNDEFINED:
                    return False
                for path, node in results(x):
                    ctx.steps -= 1
                    if ctx.steps < 0:
                        ctx.spend(0)
                    if matcher(ctx, f, (path, node)) and nxt(ctx, f, k):
                        return True
                return False

            return step

        return self.with_hoists(hoists, build)

    def assign(self, expr: ast.Assign, scope: Scope) -> Builder:
        value = expr.value
        relation = self.relation_of(value, scope)
        if relation is not None and isinstance(value, ast.Call):
            # `[p, v] := walk(x)` is `walk(x, [p, v])` with fresh variables.
            for name in term_vars(expr.target):
                if name != "_":
                    scope.bound.pop(name, None)
                    scope.declared.add(name)
            whole = ast.Call(span=value.span, name=value.name, args=(*value.args, expr.target))
            return self.relation(relation, whole, scope)
        hoists: list[Builder] = []
        fn = self.value(expr.value, scope, hoists)
        for name in term_vars(expr.target):
            if name != "_":
                scope.bound.pop(name, None)
                scope.declared.add(name)
        matcher = self.pattern(expr.target, scope)
        return self.with_hoists(hoists, self.match(fn, matcher))

    def match(self, fn: ValueFn, matcher: Any) -> Stmt:
        """`match_step(fn, matcher)`; when the pattern only stores the value in a slot
        (`x := f(y)`), as generated code that generated rule code can run inline."""
        slot = self._binds.get(matcher)
        if slot is None:
            return match_step(fn, matcher)
        env: dict[str, Any] = {"U": UNDEFINED}
        setup, value, undefined = self.operand_source(fn, 0, env)
        lines = ["def call(ctx, f):", *setup]
        if undefined:
            lines.append(f"    if {value} is U:\n        return False")
        lines.append(f"    f[{slot}] = {value}\n    return True")
        source = "\n".join(lines) + "\n"
        holds: Direct = generate(source, env, self._code_cache)
        self._test_sources[holds] = (source, env)
        return Stmt(holds)

    def unify(self, left: ast.Term, right: ast.Term, scope: Scope) -> Builder:
        left_open = self.has_pattern_vars(left, scope)
        right_open = self.has_pattern_vars(right, scope)
        if (
            (left_open or right_open)
            and isinstance(left, ast.ArrayTerm)
            and isinstance(right, ast.ArrayTerm)
            and len(left.items) != len(right.items)
        ):
            # Arrays of different lengths never unify, so nothing here binds (OPA: unsafe).
            names = {
                n for n in term_vars((left, right)) if n not in scope.bound and scope.is_local(n)
            }
            raise NotReady(names, left.span)
        if (
            (left_open or right_open)
            and isinstance(left, ast.ArrayTerm)
            and isinstance(right, ast.ArrayTerm)
            and len(left.items) == len(right.items)
        ):
            # Element by element, so an iterating element (`[x, a[i]] = [1, 2]`)
            # yields every solution, not just the first.
            parts = [self.unify(a, b, scope) for a, b in zip(left.items, right.items, strict=True)]
            return conjunction(parts)
        if left_open and right_open:
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

            compared = truthy_step(same)
            self._equality_tests[compared.direct] = (left_fn, right_fn)
            return self.with_hoists(both, compared)
        source, target = (right, left) if left_open else (left, right)
        hoists: list[Builder] = []
        fn = self.value(source, scope, hoists)
        matcher = self.pattern(target, scope)
        return self.with_hoists(hoists, self.match(fn, matcher))

    def unify_objects(self, left: ast.ObjectTerm, right: ast.ObjectTerm, scope: Scope) -> Builder:
        left_keys = [constant(i.key) for i in left.items]
        right_keys = [constant(i.key) for i in right.items]
        if MISSING in left_keys or MISSING in right_keys:
            raise NotReady({"_"}, left.span)
        right_by_key = {freeze(k): i.value for k, i in zip(right_keys, right.items, strict=True)}
        if len(left_keys) != len(right_keys) or set(map(freeze, left_keys)) != set(right_by_key):
            return Stmt(never)
        parts = [
            self.unify(i.value, right_by_key[freeze(key)], scope)
            for key, i in zip(left_keys, left.items, strict=True)
        ]
        return conjunction(parts)

    def some_in(self, expr: ast.SomeIn, scope: Scope) -> Builder:
        hoists: list[Builder] = []
        coll = self.ordered(self.value(expr.collection, scope, hoists))
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
        used = set(term_vars(expr.body))
        for declared in (expr.key, expr.value):
            if declared is not None and declared.name != "_" and declared.name not in used:
                self.problem(
                    COMPILE_ERROR,
                    f"declared var {declared.name} unused; use it in the body or write `_`",
                    declared.span,
                )
        hoists: list[Builder] = []
        domain = self.value(expr.domain, scope, hoists)
        inner = scope.copy()
        key_slot = inner.bind(expr.key.name) if expr.key is not None else 0
        val_slot = inner.bind(expr.value.name)
        body = chain(self.body(expr.body, inner, set()))

        def holds(ctx: Ctx, f: Frame) -> bool:
            collection = domain(ctx, f)
            if not isinstance(collection, COLLECTIONS):
                return False  # OPA: `every` over undefined or a scalar does not hold
            for key, val in iterate(collection):
                if key_slot:
                    f[key_slot] = key
                f[val_slot] = val
                if not body(ctx, f, stop):
                    return False
            return True

        return self.with_hoists(hoists, Stmt(holds))


_EQUALITY = ("==",)
_DYNAMIC = (ast.Ref, ast.Var, ast.Call, ast.BinOp, ast.UnaryMinus, ast.Membership)


def without_mocks(ctx: Ctx) -> Ctx:
    """The context a replacing function runs in: every function replacement lifted."""
    overrides = ctx.overrides
    if not overrides or not any(key[0] in MOCK_ROOTS for key in overrides):
        return ctx
    kept = {key: value for key, value in overrides.items() if key[0] not in MOCK_ROOTS}
    return ctx.child(ctx.input, ctx.data, kept or None)


def hoisted_terms(expr: ast.Expr) -> list[ast.Term]:
    """Sub-terms that OPA evaluates before a `not` (its compiler rewrites them into
    statements of their own, so an undefined one makes the whole statement undefined):
    references passed to a call or operator other than `==`/`=`, nested calls, and
    references or calls inside array/object/set literals. A bare reference compared
    with `==`/`=` stays under the `not` (`not input.x == 1` holds when x is missing).
    """
    out: list[ast.Term] = []
    if isinstance(expr, ast.Unify) or (isinstance(expr, ast.BinOp) and expr.op in _EQUALITY):
        operands = (expr.left, expr.right)
        for operand in operands:
            if isinstance(operand, _DYNAMIC[2:]):
                out.append(operand)
            else:
                _collect_nested(operand, out)
        return out
    if isinstance(expr, ast.BinOp):
        args: tuple[ast.Term, ...] = (expr.left, expr.right)
    elif isinstance(expr, ast.Call):
        args = expr.args
    elif isinstance(expr, ast.Membership):
        args = tuple(t for t in (expr.key, expr.value, expr.collection) if t is not None)
    elif isinstance(expr, ast.UnaryMinus):
        args = (expr.operand,)
    else:
        return out
    for arg in args:
        if isinstance(arg, _DYNAMIC):
            out.append(arg)
        else:
            _collect_nested(arg, out)
    return out


def _collect_nested(term: ast.Term, out: list[ast.Term]) -> None:
    """References and calls inside collection literals (not inside comprehensions)."""
    if isinstance(term, ast.ArrayTerm | ast.SetTerm):
        items: tuple[ast.Term, ...] = term.items
    elif isinstance(term, ast.ObjectTerm):
        items = tuple(t for item in term.items for t in (item.key, item.value))
    else:
        return
    for item in items:
        if isinstance(item, _DYNAMIC):
            out.append(item)
        else:
            _collect_nested(item, out)
