"""Generated rule source: a rule's evaluator, its clauses and their loops as one
Python function each.

Straight-line clauses and `else` chains become nested `if`s setting a value;
bare rule references read the rule cache inline (small rules run inline on a
miss); a clause with one `some … in` loop becomes one generated loop, and a
loop over constant members tested by one glob or equality runs as one match.
Each template is ours (names and slot numbers, never policy text); constants and
callees reach the code through its globals, see `codegen.generate`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from policy_engine import ast
from policy_engine.builtins import BuiltinError
from policy_engine.builtins.regex_glob import compile_glob
from policy_engine.codegen import generate, inline_body, open_test
from policy_engine.compile_body import BodyCompiler
from policy_engine.compile_terms import ClauseShape, GroupShape
from policy_engine.runtime import (
    COLLECTION_TYPES,
    COLLECTIONS,
    MISSING,
    NOT_COLLECTIONS,
    ValueFn,
    iterate,
)
from policy_engine.steps import (
    NOOP,
    Builder,
    ClauseFn,
    IterStmt,
    RuleFn,
    Stmt,
    constant,
    sequence,
)
from policy_engine.terms import NotReady, Scope
from policy_engine.values import UNDEFINED, FrozenDict, equal, freeze

__all__ = ["RuleSourceCompiler", "glob_alternation"]

# Statements of one clause nest one level each in generated code; longer bodies
# run as one condition call (Python allows at most 100 levels of indentation).
_MOST_INLINE_STATEMENTS = 24
_NO_SLOTS = (None,)

# A rule read by a bare reference runs inline at the reference, when it is at most
# this many generated lines and this many references deep (code size stays linear).
_MOST_INLINE_LINES = 60
_MOST_INLINE_DEPTH = 2

# Value types whose Python equality and hashing are Rego's equality.
_HASHED_AS_IN_REGO = frozenset({str, int, type(None)})


class RuleSourceCompiler(BodyCompiler):
    """Generates the source of rule evaluators, clauses and loops; `Compiler` decides
    what to generate and falls back to closures where this declines (None, [])."""

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
            f"    value = ctx.{cache}[rid]\n"
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
            lines.append("    value = cache[rid]")
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
        # Without definitions (only a default) the value starts undefined; otherwise the
        # first definition's chain sets it.
        lines = [] if definitions else [f"{target} = U"]
        # The name first, then what must not precede or follow it: a literal-first
        # pattern is searched for quickly, a lookbehind-first one tried at every offset.
        uses_frame = re.compile(rf"{re.escape(frame)}(?<![.\w]{re.escape(frame)})(?!\w)")
        for i, (clauses, size) in enumerate(definitions):
            env[f"{name}size{i}"] = size
            found = target if i == 0 else f"{name}v"
            chain = self.chain_lines(clauses, f"{name}d{i}", env, found, frame, depth)
            if size > 1:
                lines.append(f"{frame} = [None] * {name}size{i}")
            elif uses_frame.search("\n".join(chain)):  # one search: a line break is not [.\w]
                # No variables: nothing reads or writes a slot (slot 0 only collects
                # the values of clauses that enumerate), so one immutable frame will do;
                # none at all when no statement passes the frame on.
                env["NO_SLOTS"] = _NO_SLOTS
                lines.append(f"{frame} = NO_SLOTS")
            lines.extend(chain)
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
            # A later clause runs only while `target` is still undefined.
            clause = self.clause_lines(
                shape, f"{name}c{j}", env, target, frame, depth, unset=j == 0
            )
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
        unset: bool = True,
    ) -> list[str]:
        """Statements setting `target` to a straight-line clause's value (U when its
        body fails): each statement is a test nesting the rest; bare rule references
        read the rule cache inline. Without `unset`, `target` is known to be U already."""
        direct, kind, head, parts = shape
        env[f"{name}h"] = head
        value = f"{name}h" if kind == "const" else f"{name}h(ctx, {frame})"
        if len(parts) > _MOST_INLINE_STATEMENTS:
            parts = [direct]
        lines = [f"{target} = U"] if parts and unset else []
        indent = ""
        # Loops of inlined tests left open: the rest of the clause runs inside each,
        # under its condition, and a `break` closes it at the end (`codegen.open_test`).
        closing: list[str] = []
        for k, part in enumerate(parts):
            setup, holds, opened = self.test_source(
                part, f"{name}p{k}", env, frame, depth, open_loop=True
            )
            lines.extend(indent + line for line in setup)
            if opened:
                closing.append(f"{indent}    break")
                indent += "    "
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
        lines.extend(reversed(closing))
        return lines

    def test_source(
        self,
        test: Any,
        name: str,
        env: dict[str, Any],
        frame: str = "f",
        depth: int = 0,
        open_loop: bool = False,
    ) -> tuple[list[str], str, bool]:
        """Statements and an expression for whether statement `test` holds in `frame`,
        and whether the statements leave a loop open (only with `open_loop`; see
        `codegen.open_test`: the expression is then tested inside that loop).

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
                opened = open_test(lines, name) if open_loop else None
                if opened is not None:
                    return opened[0], opened[1], True
                return lines, name, False
        if rule_test is None:
            env[name] = test
            return [], f"{name}(ctx, {frame})", False
        fill, cache, rule_id, negated = rule_test
        env[name], env[f"{name}r"] = fill, rule_id
        value = f"{name}t"
        setup = [f"{value} = ctx.{cache}[{name}r]", f"if {value} is M:"]
        inner = None
        compute = self._fill_computes.get(fill)
        if compute is not None and depth < _MOST_INLINE_DEPTH:
            inner = self.group_lines(compute, env, f"{name}_", value, f"{name}f", depth + 1)
        if inner is not None and len(inner) <= _MOST_INLINE_LINES:
            setup.extend("    " + line for line in inner)
            setup.append(f"    ctx.{cache}[{name}r] = {value}")
        else:
            setup.append(f"    {value} = {name}(ctx)")
        shape = self._group_shapes.get(compute) if compute is not None else None
        if shape is not None and _boolean_valued(shape):
            # Its value is true, false or undefined: one identity test decides.
            return setup, (f"{value} is not True" if negated else f"{value} is True"), False
        if negated:
            return setup, f"{value} is U or {value} is False", False
        return setup, f"{value} is not U and {value} is not False", False

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
            setup, holds, _ = self.test_source(test, f"b{k}", env)
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
        indent = self.loop_source(loop, after, env, lines)
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

    def comprehension_loop(
        self, body: list[Builder], head: ValueFn, is_set: bool
    ) -> ValueFn | None:
        """`[head | before; some … in coll; after]` (or a set of them), the statements
        around the one loop deterministic, as one generated function in the
        enclosing frame; None for any other body.

        It runs as the closures do: the statements before the loop (failing: the
        empty collection), the whole collection charged to the step limit, then each
        member through the statements after it into the head, whose undefined values
        are left out; a set freezes its members.
        """
        builders = [b for b in body if b is not NOOP]
        loops = [i for i, b in enumerate(builders) if isinstance(b, IterStmt)]
        if len(loops) != 1 or not all(isinstance(b, Stmt | IterStmt) for b in builders):
            return None
        (at,) = loops
        loop = builders[at]
        assert isinstance(loop, IterStmt)
        before = [b.direct for b in builders[:at] if isinstance(b, Stmt)]
        after = [b.direct for b in builders[at + 1 :] if isinstance(b, Stmt)]
        if len(after) > _MOST_INLINE_STATEMENTS:
            after = [sequence(after)]
        empty = "frozenset()" if is_set else "()"
        env: dict[str, Any] = {"U": UNDEFINED, "M": MISSING, "COLLECTIONS": COLLECTIONS}
        env["COLLECTION_TYPES"], env["NOT_COLLECTIONS"] = COLLECTION_TYPES, NOT_COLLECTIONS
        env["iterate"], env["freeze"] = iterate, freeze
        lines = ["def get(ctx, f):"]
        for k, test in enumerate(before):
            setup, holds, _ = self.test_source(test, f"b{k}", env)
            lines.extend("    " + line for line in setup)
            lines.append(f"    if not ({holds}):\n        return {empty}")
        # Operand numbers past any statement's (`a{k}`, `b{k}`) keep the names apart.
        setup, items, _undefined = self.operand_source(loop.coll, 98, env)
        lines.extend(setup)
        lines.append(f"    items = {items}")
        lines.append("    kind = type(items)")
        lines.append(
            "    if kind not in COLLECTION_TYPES and ("
            "kind in NOT_COLLECTIONS or not isinstance(items, COLLECTIONS)):"
        )
        lines.append(f"        return {empty}")
        lines.append("    ctx.steps -= len(items)")
        lines.append("    if ctx.steps < 0:\n        ctx.spend(0)")
        lines.append("    result = []")
        indent = self.loop_source(loop, after, env, lines)
        setup, value, undefined = self.operand_source(head, 97, env)
        for line in setup:
            lines.extend(indent + part[4:] for part in line.split("\n"))
        if undefined:
            lines.append(f"{indent}if {value} is not U:")
            indent += "    "
        lines.append(f"{indent}result.append({value})")
        if is_set:
            lines.append("    return frozenset(map(freeze, result)) if result else frozenset()")
        else:
            lines.append("    return tuple(result)")
        run: ValueFn = generate("\n".join(lines) + "\n", env, self._code_cache)
        return run

    def loop_source(
        self, loop: IterStmt, after: list[Any], env: dict[str, Any], lines: list[str]
    ) -> str:
        """Append the generated loop over `items` binding the loop's slots, and the
        tests of the statements after it, nested; the indent of the innermost body."""
        if loop.key_slot:
            lines.append("    for key, val in iterate(items):")
            lines.append(f"        f[{loop.key_slot}] = key")
        else:
            lines.append("    for val in (items.values() if isinstance(items, dict) else items):")
        lines.append(f"        f[{loop.val_slot}] = val")
        indent = "        "
        for k, test in enumerate(after):
            setup, holds, _ = self.test_source(test, f"a{k}", env)
            lines.extend(indent + line for line in setup)
            lines.append(f"{indent}if {holds}:")
            indent += "    "
        return indent

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
        dispatch = glob_dispatch(patterns)
        if dispatch is None:
            return []
        env["glob_by_first"], env["glob_others"] = dispatch
        setup, text, _undefined = self.operand_source(value_fn, 99, env)
        return [
            *setup,
            f"    if type({text}) is str:",
            f"        any_glob = glob_by_first.get({text}[:1], glob_others)",
            f"        return head if any_glob is not None and any_glob({text}) is not None else U",
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
    if type(patterns) not in (tuple, frozenset, list) or not 0 < len(patterns) <= 512:
        return None
    if not all(type(p) is str for p in patterns):
        return None
    try:
        regexes = [compile_glob(p, "").pattern for p in patterns]
        either = re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL)
    except (BuiltinError, re.error):
        return None
    return either.fullmatch


def _boolean_valued(shape: GroupShape) -> bool:
    """Whether a rule of straight-line clauses can only be true, false or undefined: every
    clause's head and the default (if any) a constant boolean."""
    definitions, default, _conflict = shape
    if default is not MISSING and type(default) is not bool:
        return False
    return all(
        kind == "const" and type(head) is bool
        for clauses, _size in definitions
        for _direct, kind, head, _parts in clauses
    )


# A glob starting with one of these (or empty) may match text starting with any character.
_GLOB_SYNTAX = frozenset("*?[{\\")

MatchFn = Callable[[str], Any]


def glob_dispatch(patterns: Any) -> tuple[dict[str, MatchFn], MatchFn | None] | None:
    """`glob_alternation` split by the text's first character: a glob starting with a
    plain character matches only text starting with it, so each first character gets
    the alternation of its globs and of those starting with glob syntax (`others`, for
    every other first character and the empty text; None when there are none). An
    allow list of names then tries the few globs sharing the name's first letter, and
    an unknown name often none. None unless `glob_alternation` accepts the patterns."""
    if glob_alternation(patterns) is None:
        return None
    others = [p for p in patterns if not p or p[0] in _GLOB_SYNTAX]
    by_first: dict[str, list[str]] = {}
    for pattern in patterns:
        if pattern and pattern[0] not in _GLOB_SYNTAX:
            by_first.setdefault(pattern[0], []).append(pattern)
    matchers = {first: glob_alternation([*group, *others]) for first, group in by_first.items()}
    if any(matcher is None for matcher in matchers.values()):
        return None
    return (
        {first: m for first, m in matchers.items() if m is not None},
        glob_alternation(others) if others else None,
    )
