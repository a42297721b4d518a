"""Compiling terms: values and patterns (the base of the compiler; calls are
`compile_calls`).

Values become `ValueFn(ctx, frame)` closures, patterns become matchers that
bind frame slots, iteration needed inside a term (`xs[i]` with `i` unbound)
is hoisted into statements run before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import CodeType
from typing import Any

from policy_engine import ast
from policy_engine.builtins import BUILTINS, Builtin
from policy_engine.codegen import (
    data_root,
    dynamic_index,
    generate,
    inline_body,
    input_root,
    key_step,
    key_steps,
    rule_walk,
    slot_reader_fn,
    slot_walk,
    str_terms,
    walk,
)
from policy_engine.errors import CONFLICT_ERROR, TYPE_ERROR, Diagnostic, EvalError
from policy_engine.index import RuleIndex
from policy_engine.runtime import (
    ARRAYS,
    COLLECTION_TYPES,
    COLLECTIONS,
    MISSING,
    NOT_COLLECTIONS,
    Cont,
    Ctx,
    Frame,
    Step,
    ValueFn,
    data_index,
    in_order,
    index_value,
)
from policy_engine.source import Span
from policy_engine.steps import (
    NOOP,
    Builder,
    ClauseFn,
    FuncFn,
    IterStmt,
    Matcher,
    RuleFn,
    chain,
    constant,
    go_on,
    iter_match_step,
    iter_step,
    stop,
)
from policy_engine.terms import Layout, NotReady, Scope, term_vars
from policy_engine.values import UNDEFINED, FrozenDict, equal, freeze

__all__ = ["ClauseShape", "GroupShape", "TermCompiler", "mocked_names", "replaced_data_paths"]

ClauseShape = tuple[Any, str, Any, list[Any]]
"""A straight-line clause: (condition, "const" | "value", head, the condition's statements)."""
GroupShape = tuple[list[tuple[list[ClauseShape], int]], Any, Any]
"""A complete rule of straight-line clauses: ([(clause shapes, frame size)], default, conflict)."""


class TermCompiler:
    """Compiles terms and patterns; the statement and rule layers subclass it."""

    def __init__(self, index: RuleIndex, builtins: Mapping[str, Builtin] = BUILTINS) -> None:
        self.index = index
        self.builtins = builtins
        self.diagnostics: list[Diagnostic] = []
        self._rules: dict[tuple[str, ...], RuleFn] = {}
        self._funcs: dict[tuple[str, ...], FuncFn] = {}
        # Inside an array comprehension (depth): its iterations go in OPA's key order.
        self._ordered = 0
        self._namespaces: dict[tuple[str, ...], RuleFn] = {}
        # Each general ref-head group's per-definition entry functions (see compile_tree).
        self._tree_entries: dict[tuple[str, ...], list[Any]] = {}
        self._ids = 0
        # What some value functions are, so generated call sites can inline them:
        # id(fn) -> ("const", value) | ("slot", index); the fn is kept alive by the entry.
        self._known: dict[int, tuple[str, Any, ValueFn]] = {}
        self._single_clauses: dict[RuleFn, tuple[ClauseFn, int]] = {}
        # Straight-line clauses by their parts, so an `else` chain or a rule's
        # cache can run them inline: clause -> (condition, "const" | "value", head,
        # the condition's statements).
        self._clause_shapes: dict[ClauseFn, ClauseShape] = {}
        # Definitions whose clauses all have shapes: definition -> (shapes, frame size).
        self._definition_shapes: dict[RuleFn, tuple[list[ClauseShape], int]] = {}
        # Complete rule groups whose definitions all have shapes, so the rule's
        # evaluator is one generated function: compute -> (definitions, default, conflict).
        self._group_shapes: dict[RuleFn, GroupShape] = {}
        # Partial set definitions by their body and frame layout, so a rule with
        # several of them collects into one set: definition -> (run, layout).
        self._set_parts: dict[RuleFn, tuple[Step, Layout]] = {}
        # Bare rule references used as conditions (or under `not`):
        # test -> (fill, cache name, rule id, negated); `fill` computes and caches.
        self._rule_tests: dict[Any, tuple[ValueFn, str, int, bool]] = {}
        # Generated conditions by their source and globals, so that generated rule
        # code can run them inline: test -> (source, env).
        self._test_sources: dict[Any, tuple[str, dict[str, Any]]] = {}
        # The same for generated values (call sites, literals): value -> (source, env).
        self._value_sources: dict[Any, tuple[str, dict[str, Any]]] = {}
        # Each rule's `fill` (compute and cache) -> the rule's `compute`.
        self._fill_computes: dict[Any, RuleFn] = {}
        # Generated `to_number` call sites: their value is an int or a Decimal (or
        # undefined), so an ordering of it tests no type.
        self._numbers: set[Any] = set()
        # `glob.match(p, null, x)` conditions: test -> (pattern value, x value).
        self._glob_tests: dict[Any, tuple[ValueFn, ValueFn]] = {}
        # `a == b` conditions (and `a = b` between bound terms): test -> (a, b).
        self._equality_tests: dict[Any, tuple[ValueFn, ValueFn]] = {}
        # Patterns that only store the value in a slot (`x := ...`): matcher -> slot.
        self._binds: dict[Any, int] = {}
        self._module_globals: dict[int, dict[str, tuple[str, ...]]] = {}
        self._code_cache: dict[str, CodeType] = {}
        # Generated bodies renamed for inlining (see `codegen.inline_body`).
        self._inlined_sources: dict[tuple[str, str, str, str], list[str] | None] = {}
        # Whether each rule/function group reads `input` (itself or through what it
        # calls); the innermost group being compiled is last in `_reading_input`.
        self._reads_input: dict[tuple[str, ...], bool] = {}
        self._reading_input: list[bool] = []
        modules = {id(m): m for g in index.groups.values() for m, _ in g.definitions}
        # One walk over every module finds its `with` statements (a big policy has none).
        withs = _withs(tuple(modules.values()))
        self.rules_replaceable = any(_replaces_data(w) for w in withs)
        # The `data` paths some `with` replaces (None: one is not constant, so any).
        # Only a rule whose own path is among them checks `ctx.overrides`.
        self.replaced_paths = replaced_data_paths(withs)
        # Names some `with` may replace as a function (`with count as f`), so that only
        # the call sites of those functions look for a replacement.
        self.mocked_names = mocked_names(withs)
        self._mocked_last_names = {name[-1] for name in self.mocked_names}

    def replaceable(self, path: tuple[str, ...]) -> bool:
        """Whether a `with data.…` statement may replace the rule at exactly `path`."""
        if not self.rules_replaceable:
            return False
        return self.replaced_paths is None or path in self.replaced_paths

    @property
    def rule_count(self) -> int:
        """How many rules have ids (1 to this): the size of an evaluation's rule cache."""
        return self._ids

    def known_ids(self) -> list[int]:
        """Keys of the registry of inlinable value functions (see `forget_except`)."""
        return list(self._known)

    def forget_except(self, keep: set[int]) -> None:
        """Drop registry entries added since `known_ids()` returned `keep`.

        Generated code already holds what it inlined; an entry only keeps its
        function alive so its id cannot be reused while registered.
        """
        for key in [k for k in self._known if k not in keep]:
            del self._known[key]

    # ---- input dependence ----------------------------------------------------------------

    def note_input(self) -> None:
        """The group being compiled reads `input` (or evaluates under `with`)."""
        if self._reading_input:
            self._reading_input[-1] = True

    def note_dependency(self, path: tuple[str, ...]) -> None:
        """The group being compiled uses the group at `path` (unknown counts as reading input)."""
        if self._reads_input.get(path, True):
            self.note_input()

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

    def has_pattern_vars(self, term: ast.Term, scope: Scope) -> bool:
        if isinstance(term, ast.Var):
            return term.name == "_" or (scope.is_local(term.name) and term.name not in scope.bound)
        if isinstance(term, ast.ArrayTerm):
            return any(self.has_pattern_vars(t, scope) for t in term.items)
        if isinstance(term, ast.ObjectTerm):
            return any(self.has_pattern_vars(i.value, scope) for i in term.items)
        return False

    def constant_fn(self, value: Any) -> ValueFn:
        const_fn: ValueFn = lambda ctx, f: value  # noqa: E731
        self._known[id(const_fn)] = ("const", value, const_fn)
        return const_fn

    # ---- provided by the subclasses --------------------------------------------------

    def body(
        self, literals: tuple[ast.Literal, ...], scope: Scope, needed: set[str]
    ) -> list[Builder]:
        """Compile and order a body's statements (`compile_body.BodyCompiler`)."""
        raise NotImplementedError

    def rule(self, path: tuple[str, ...]) -> RuleFn:
        """The evaluator of a rule group (`compile.Compiler`)."""
        raise NotImplementedError

    def namespace(self, path: tuple[str, ...]) -> RuleFn:
        """The evaluator of a package/namespace object (`compile.Compiler`)."""
        raise NotImplementedError

    def function(self, path: tuple[str, ...]) -> FuncFn:
        """The evaluator of a user function (`compile.Compiler`)."""
        raise NotImplementedError

    def constant_rule(self, path: tuple[str, ...]) -> Any:
        """A constant rule's value, or MISSING (`compile.Compiler`)."""
        raise NotImplementedError

    def binop(self, term: ast.BinOp, scope: Scope, hoists: list[Builder]) -> ValueFn:
        """An operator's value (`compile_calls.CallCompiler`)."""
        raise NotImplementedError

    def call(self, term: ast.Call, scope: Scope, hoists: list[Builder]) -> ValueFn:
        """A call's value (`compile_calls.CallCompiler`)."""
        raise NotImplementedError

    def membership(
        self, term: ast.Membership, scope: Scope, hoists: list[Builder], test: bool = False
    ) -> ValueFn:
        """`x in c` / `k, x in c` (`compile_calls.CallCompiler`)."""
        raise NotImplementedError

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

            self._binds[bind] = slot
            return bind
        if isinstance(term, ast.ArrayTerm) and self.has_pattern_vars(term, scope):
            return self.array_pattern(term, scope)
        if isinstance(term, ast.ObjectTerm) and self.has_pattern_vars(term, scope):
            return self.object_pattern(term, scope)
        hoists: list[Builder] = []
        fn = self.value(term, scope, hoists)
        if hoists:
            return self.generated_pattern(hoists, fn, scope.layout.new_slot())
        const = constant(term)
        if isinstance(const, str):
            return lambda ctx, f, v: v == const and type(v) is str
        return lambda ctx, f, v: equal(fn(ctx, f), v)

    def is_unbound_local(self, var: ast.Var, scope: Scope) -> bool:
        return scope.is_local(var.name) and var.name not in scope.bound

    @staticmethod
    def generated_pattern(hoists: list[Builder], fn: ValueFn, slot: int) -> Matcher:
        # The pattern iterates (`x = data.a[i]` with `i` unbound on the right):
        # succeed if any generated value equals; keep the generating bindings.
        # The value to match waits in a frame slot, so evaluations never share it.
        def remember(ctx: Ctx, f: Frame, k: Cont) -> bool:
            return equal(fn(ctx, f), f[slot])

        run = chain(hoists, remember)

        def match(ctx: Ctx, f: Frame, v: Any) -> bool:
            f[slot] = v
            return run(ctx, f, stop)

        return match

    def array_pattern(self, term: ast.ArrayTerm, scope: Scope) -> Matcher:
        matchers = [self.pattern(item, scope) for item in term.items]
        size = len(matchers)

        def match(ctx: Ctx, f: Frame, v: Any) -> bool:
            if not isinstance(v, ARRAYS) or len(v) != size:
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
            self.note_input()
            prefix = root[1:]
            return self.apply_path(
                input_root, tuple(str_terms(prefix, span)) + items, scope, hoists
            )
        node: tuple[Any, ...] = root
        position = 0
        while True:
            if node in self.index.groups and node in self.index.namespaces:
                # A key-tree rule with rules under it: the merged object of them all.
                return self.apply_path(self.namespace(node), items[position:], scope, hoists)
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
            data_root,
            tuple(str_terms(data_path, span)) + items[position:],
            scope,
            hoists,
            data=True,
        )

    def apply_path(
        self,
        base: ValueFn,
        items: tuple[ast.Term, ...],
        scope: Scope,
        hoists: list[Builder],
        data: bool = False,
    ) -> ValueFn:
        """`base` followed by `items`; `data`: a reference into base data, whose keys are
        read as OPA reads its store (`runtime.data_index`)."""
        fn = base
        pending_keys: list[Any] = []
        for position, item in enumerate(items):
            const = _data_key(item) if data else constant(item)
            if const is not MISSING:
                pending_keys.append(freeze(const))
                continue
            if not self.iterates(item, scope):
                # A dynamic key: the rest of the path too, as one generated function
                # when nothing after it iterates (`data.catalog.models[m].providers`).
                rest = items[position:]
                if not any(self.iterates(t, scope) for t in rest):
                    return self.mixed_walk(fn, tuple(pending_keys), rest, scope, hoists, data)
            fn = self.walk_keys(fn, tuple(pending_keys), data)
            pending_keys = []
            if isinstance(item, ast.Var) and (
                item.name == "_" or self.is_unbound_local(item, scope)
            ):
                key_slot = 0 if item.name == "_" else scope.bind(item.name)
                val_slot = scope.layout.new_slot()
                hoists.append(iter_step(self.ordered(fn), key_slot, val_slot))
                fn = slot_reader_fn(val_slot)
                continue
            if self.has_pattern_vars(item, scope):
                key_matcher = self.pattern(item, scope)
                val_slot = scope.layout.new_slot()
                hoists.append(iter_match_step(self.ordered(fn), key_matcher, val_slot))
                fn = slot_reader_fn(val_slot)
                continue
            key_fn = self.value(item, scope, hoists)
            fn = dynamic_index(fn, key_fn, data)
        keys = tuple(pending_keys)
        walked = self.walk_keys(fn, keys, data)
        if keys and fn in (input_root, data_root):
            # Generated call sites inline this constant path instead of calling it.
            root = "input" if fn is input_root else "data"
            self._known[id(walked)] = ("path", (root, keys), walked)
        return walked

    def iterates(self, item: ast.Term, scope: Scope) -> bool:
        """Whether a path item binds variables (iteration) rather than naming a key."""
        if isinstance(item, ast.Var) and (item.name == "_" or self.is_unbound_local(item, scope)):
            return True
        return self.has_pattern_vars(item, scope)

    def mixed_walk(
        self,
        base: ValueFn,
        keys: tuple[Any, ...],
        rest: tuple[ast.Term, ...],
        scope: Scope,
        hoists: list[Builder],
        data: bool = False,
    ) -> ValueFn:
        """`base`, constant `keys`, then `rest` (constant or computed keys) as straight-line
        code. Every computed key is evaluated even below an undefined value, as the
        closure form does (a strict-mode error in a key is never skipped). `data`: the
        steps of a reference into base data (`runtime.data_index`)."""
        other = "data_index" if data else "index_value"
        env: dict[str, Any] = {
            "U": UNDEFINED,
            "M": MISSING,
            other: data_index if data else index_value,
        }
        lines = ["def get(ctx, f):", f"    v = {self.inline_operand(base, 'b', env)}"]
        steps: list[tuple[bool, Any]] = [(False, key) for key in keys]
        for item in rest:
            const = _data_key(item) if data else constant(item)
            if const is not MISSING:
                steps.append((False, freeze(const)))
            else:
                steps.append((True, self.value(item, scope, hoists)))
        for i, (computed, key) in enumerate(steps):
            if not computed:
                env[f"k{i}"] = key
                lines.append(key_step("v", f"k{i}", key, data, env))
                continue
            lines.append(f"    key = {self.inline_operand(key, f'k{i}', env)}")
            lines.append("    if key is U or v is U:\n        v = U")
            lines.append(
                "    elif type(v) is dict and type(key) is str:\n        v = v.get(key, U)"
            )
            lines.append(f"    else:\n        v = {other}(v, key)")
        lines.append("    return v")
        get: ValueFn = generate("\n".join(lines) + "\n", env, self._code_cache)
        return get

    def operand_source(
        self, fn: ValueFn, i: int, env: dict[str, Any]
    ) -> tuple[list[str], str, bool]:
        """Source for operand `i` of generated code: statements (indented one level)
        and an expression for `fn(ctx, f)`, and whether that may be undefined.

        Constants (`c{i}`, in `env`) and frame slots are read inline, a rule's value
        from its cache (`fill` on a miss), a constant path of `input`/`data` as key
        steps; anything else is called into `x{i}`.
        """
        known = self._known.get(id(fn))
        if known is not None and known[0] == "const":
            env[f"c{i}"] = known[1]
            return [], f"c{i}", False
        if known is not None and known[0] == "slot":
            return [], f"f[{known[1]}]", False
        x = f"x{i}"
        if known is not None and known[0] == "rule":
            cache, rule_id, fill = known[1]
            env[f"r{i}"], env[f"a{i}"], env["M"] = rule_id, fill, MISSING
            return (
                [
                    f"    {x} = ctx.{cache}[r{i}]",
                    f"    if {x} is M:\n        {x} = a{i}(ctx, f)",
                ],
                x,
                True,
            )
        if known is not None and known[0] == "rule path":
            # A memoised rule's value followed by constant keys (`deny.status`): read
            # from the cache and walked inline, as `codegen.rule_walk` does in a call.
            cache, rule_id, fill, keys = known[1]
            env[f"r{i}"], env[f"a{i}"], env["M"] = rule_id, fill, MISSING
            env["U"], env["index_value"] = UNDEFINED, index_value
            lines = [
                f"    {x} = ctx.{cache}[r{i}]",
                f"    if {x} is M:\n        {x} = a{i}(ctx, f)",
            ]
            steps = [(f"p{i}_{j}", key) for j, key in enumerate(keys)]
            env.update(steps)
            lines.extend(key_steps(x, x, steps, False, env, guarded=True))
            return lines, x, True
        if known is not None and known[0] == "slot path":
            slot, keys = known[1]
            env["U"], env["index_value"] = UNDEFINED, index_value
            steps = [(f"p{i}_{j}", key) for j, key in enumerate(keys)]
            env.update(steps)
            lines = [f"    {x} = f[{slot}]"]
            lines.extend(key_steps(x, x, steps, False, env, guarded=True))
            return lines, x, True
        if known is not None and known[0] == "path":
            root, keys = known[1]
            env["U"], env["index_value"], env["data_index"] = UNDEFINED, index_value, data_index
            steps = [(f"p{i}_{j}", key) for j, key in enumerate(keys)]
            env.update(steps)
            lines = key_steps(x, f"ctx.{root}", steps, root == "data", env)
            return lines, x, True
        inlined = self._value_sources.get(fn)
        if inlined is not None and inlined[0].count("\n") <= _MOST_INLINED_LINES:
            source, value_env = inlined
            body = inline_body(source, value_env, f"{x}_", "f", x, env, self._inlined_sources)
            if body is not None:
                return ["    " + line for line in body], x, True
        env[f"a{i}"] = fn
        return [f"    {x} = a{i}(ctx, f)"], x, True

    def inline_operand(self, fn: ValueFn, name: str, env: dict[str, Any]) -> str:
        """An expression for `fn(ctx, f)`: roots, constants and slots inline."""
        if fn is input_root:
            return "ctx.input"
        if fn is data_root:
            return "ctx.data"
        known = self._known.get(id(fn))
        if known is not None and known[0] == "const":
            env[name] = known[1]
            return name
        if known is not None and known[0] == "slot":
            return f"f[{known[1]}]"
        env[name] = fn
        return f"{name}(ctx, f)"

    def walk_keys(self, fn: ValueFn, keys: tuple[Any, ...], data: bool = False) -> ValueFn:
        known = self._known.get(id(fn))
        if keys and known is not None and known[0] == "rule":
            cache, rule_id, fill = known[1]
            walked = rule_walk(cache, rule_id, fill, keys, self._code_cache)
            self._known[id(walked)] = ("rule path", (cache, rule_id, fill, keys), walked)
            return walked
        if keys and not data and known is not None and known[0] == "slot":
            # A variable's or an argument's field (`window.rpm`): generated call sites
            # read the slot and walk it inline (`operand_source`), saving two calls.
            walked = slot_walk(known[1], keys, self._code_cache)
            self._known[id(walked)] = ("slot path", (known[1], keys), walked)
            return walked
        return walk(fn, keys, self._code_cache, data)

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
            keys = [constant(i.key) for i in term.items]
            if all(type(k) is str for k in keys) and len(set(keys)) == len(keys):
                return self.fixed_key_object(keys, [value for _key, value in pairs])

            def make_object(ctx: Ctx, f: Frame) -> Any:
                out: dict[Any, Any] = {}
                for key_fn, val_fn in pairs:
                    key, val = key_fn(ctx, f), val_fn(ctx, f)
                    if key is UNDEFINED or val is UNDEFINED:
                        return UNDEFINED
                    # A key written twice keeps its last value, as OPA's literals do.
                    out[freeze(key)] = val
                return out

            return make_object
        items = [self.value(t, scope, hoists) for t in term.items]
        is_set = isinstance(term, ast.SetTerm)
        if not is_set and items:
            return self.fixed_array(items)

        def make(ctx: Ctx, f: Frame) -> Any:
            values = [fn(ctx, f) for fn in items]
            if any(v is UNDEFINED for v in values):
                return UNDEFINED
            return frozenset(map(freeze, values)) if is_set else tuple(values)

        return make

    def fixed_key_object(self, keys: list[Any], values: list[ValueFn]) -> ValueFn:
        """An object literal with distinct constant string keys, as a generated dict display."""
        env: dict[str, Any] = {"U": UNDEFINED}
        lines, exprs = self.operands_source(values, env)
        for i, key in enumerate(keys):
            env[f"k{i}"] = key
        entries = ", ".join(f"k{i}: {expr}" for i, expr in enumerate(exprs))
        return self._generate_display(lines, f"{{{entries}}}", env)

    def fixed_array(self, values: list[ValueFn]) -> ValueFn:
        """An array literal as a generated tuple display (constants and slots inline)."""
        env: dict[str, Any] = {"U": UNDEFINED}
        lines, exprs = self.operands_source(values, env)
        return self._generate_display(lines, f"({', '.join(exprs)},)", env)

    def operands_source(
        self, values: list[ValueFn], env: dict[str, Any], undefined: str = "U"
    ) -> tuple[list[str], list[str]]:
        """Source for the operands of a literal or call: constants and frame slots
        inline, other values computed first into `x{i}`; if any of them is undefined,
        the generated function returns `undefined`."""
        lines: list[str] = []
        checks: list[str] = []
        exprs: list[str] = []
        for i, value in enumerate(values):
            setup, expr, check = self.operand_source(value, i, env)
            lines.extend(setup)
            exprs.append(expr)
            if check:
                checks.append(f"{expr} is U")
        if checks:
            lines.append(f"    if {' or '.join(checks)}:")
            lines.append(f"        return {undefined}")
        return lines, exprs

    def _generate_display(self, lines: list[str], display: str, env: dict[str, Any]) -> ValueFn:
        source = "def get(ctx, f):\n" + "\n".join([*lines, f"    return {display}"]) + "\n"
        make: ValueFn = generate(source, env, self._code_cache)
        self._value_sources[make] = (source, env)
        return make

    def ordered(self, coll: ValueFn) -> ValueFn:
        """`coll` as an iteration inside an array comprehension sees it: objects and
        sets in key order, as OPA iterates them (the array shows the order)."""
        if not self._ordered:
            return coll

        def in_key_order(ctx: Ctx, f: Frame) -> Any:
            return in_order(coll(ctx, f))

        return in_key_order

    def comprehension(self, term: ast.Term, scope: Scope) -> ValueFn:
        inner = scope.copy()
        assert isinstance(term, ast.ArrayCompr | ast.SetCompr | ast.ObjectCompr)
        head_terms: tuple[ast.Term, ...] = (
            (term.key, term.value) if isinstance(term, ast.ObjectCompr) else (term.term,)
        )
        hoists: list[Builder] = []
        array = isinstance(term, ast.ArrayCompr)
        self._ordered += array
        try:
            body_builders = self.body(term.body, inner, set(term_vars(head_terms)))
            heads = [self.value(t, inner, hoists) for t in head_terms]
        finally:
            self._ordered -= array
        acc_slot = inner.layout.new_slot()
        span = term.span
        members = self.members_comprehension(term, body_builders, hoists, heads)
        if members is not None:
            return members
        if not hoists and isinstance(term, ast.ArrayCompr | ast.SetCompr):
            looped = self.comprehension_loop(body_builders, heads[0], is_set=not array)
            if looped is not None:
                return looped

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
        run = chain([*body_builders, *hoists], collect)

        if isinstance(term, ast.ArrayCompr):

            def evaluate_array(ctx: Ctx, f: Frame) -> Any:
                result: list[Any] = []
                f[acc_slot] = result
                run(ctx, f, go_on)
                return tuple(result)

            return evaluate_array
        if isinstance(term, ast.SetCompr):

            def evaluate_set(ctx: Ctx, f: Frame) -> Any:
                result: list[Any] = []
                f[acc_slot] = result
                run(ctx, f, go_on)
                return frozenset(map(freeze, result)) if result else frozenset()

            return evaluate_set

        def evaluate_object(ctx: Ctx, f: Frame) -> Any:
            result: dict[Any, Any] = {}
            f[acc_slot] = result
            run(ctx, f, go_on)
            return result

        return evaluate_object

    def comprehension_loop(
        self, body: list[Builder], head: ValueFn, is_set: bool
    ) -> ValueFn | None:
        """An array or set comprehension as one generated function, or None (the
        closures then run it); see `RuleSourceCompiler.comprehension_loop`."""
        return None

    def members_comprehension(
        self, term: ast.Term, body: list[Builder], hoists: list[Builder], heads: list[ValueFn]
    ) -> ValueFn | None:
        """`[x | some x in xs]` and `{x | some x in xs}`: the members of `xs` (an
        object's values; its keys, an array's indices for `some x, _ in xs`) in one
        C-level pass, as the loop would collect them: the whole collection charged to
        the step limit, nothing for a value that is not a collection, arrays in the
        order the iteration sees (`ordered`), sets of frozen members. None for any
        other comprehension."""
        if not isinstance(term, ast.ArrayCompr | ast.SetCompr) or hoists:
            return None
        loops = [b for b in body if b is not NOOP]
        if len(loops) != 1 or type(loops[0]) is not IterStmt:
            return None
        loop = loops[0]
        head = self._known.get(id(heads[0]), ())[:2]
        if head == ("slot", loop.val_slot) and not loop.key_slot:
            keys = False
        elif loop.key_slot and head == ("slot", loop.key_slot) != ("slot", loop.val_slot):
            keys = True  # `some k, _ in xs`: an object's keys, an array's indices, a set's members
        else:
            return None
        coll = loop.coll

        def members(ctx: Ctx, f: Frame) -> Any:
            items = coll(ctx, f)
            kind = type(items)
            if kind not in COLLECTION_TYPES and (
                kind in NOT_COLLECTIONS or not isinstance(items, COLLECTIONS)
            ):
                return ()
            ctx.steps -= len(items)
            if ctx.steps < 0:
                ctx.spend(0)
            if isinstance(items, dict):
                return items.keys() if keys else items.values()
            if keys and isinstance(items, ARRAYS):
                return range(len(items))
            return items

        if isinstance(term, ast.ArrayCompr):

            def member_array(ctx: Ctx, f: Frame) -> Any:
                return tuple(members(ctx, f))

            return member_array

        def member_set(ctx: Ctx, f: Frame) -> Any:
            return frozenset(map(freeze, members(ctx, f)))

        return member_set


# Generated code runs a generated operand inline up to this many lines of source.
_MOST_INLINED_LINES = 40


def _withs(node: object) -> list[ast.With]:
    """Every `with` statement anywhere in `node` (nested ones in a `with`'s value too)."""
    return [w for found in ast.walk(node) if type(found) is ast.Literal for w in found.withs]


def _data_key(item: ast.Term) -> Any:
    """A constant key of a reference into base data. A number written with a fraction or
    an exponent keeps that form: OPA reads `data.x[2.0]` as key "2.0", never "2"."""
    if isinstance(item, ast.NumberLit) and not item.text.isdigit():
        return Decimal(item.text)
    return constant(item)


def _replaces_data(modifier: ast.With) -> bool:
    target = modifier.target.head if isinstance(modifier.target, ast.Ref) else modifier.target
    return isinstance(target, ast.Var) and target.name == "data"


def replaced_data_paths(withs: list[ast.With]) -> set[tuple[Any, ...]] | None:
    """Every `data.…` path these `with` statements replace, or None if one is not constant."""
    paths: set[tuple[Any, ...]] = set()
    for modifier in withs:
        target = modifier.target
        head = target.head if isinstance(target, ast.Ref) else target
        if not isinstance(head, ast.Var) or head.name != "data":
            continue
        keys = tuple(constant(t) for t in target.path) if isinstance(target, ast.Ref) else ()
        if MISSING in keys:
            return None
        paths.add(("data", *keys))
    return paths


def ref_name(term: ast.Term) -> tuple[str, ...] | None:
    """`count` -> ("count",), `time.now_ns` -> ("time", "now_ns"); None for other terms."""
    if isinstance(term, ast.Var):
        return (term.name,)
    if isinstance(term, ast.Ref) and isinstance(term.head, ast.Var):
        parts = [term.head.name]
        for item in term.path:
            if not isinstance(item, ast.StringLit):
                return None
            parts.append(item.value)
        return tuple(parts)
    return None


def mocked_names(withs: list[ast.With]) -> frozenset[tuple[str, ...]]:
    """Every name these `with` statements replace other than `input…` (functions among them)."""
    names: set[tuple[str, ...]] = set()
    for modifier in withs:
        name = ref_name(modifier.target)
        if name is not None and name[0] != "input":
            names.add(name)
    return frozenset(names)
