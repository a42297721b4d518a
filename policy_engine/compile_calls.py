"""Compiling calls: operators, `==`, membership, built-ins and user functions.

A built-in call site is generated code specialised to its operands (constants
and variables read inline, see `TermCompiler.operand_source`), with the common
case inline: strings compared or tested with Python's own operations, numbers
ordered, a string looked up in a constant collection, a glob matched by its
cached regex. Conditions answer whether the call is true (`test`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from policy_engine import ast
from policy_engine.builtins import BUILTINS, Builtin, BuiltinError
from policy_engine.builtins.numbers import parse_number
from policy_engine.builtins.regex_glob import compile_glob
from policy_engine.builtins.strings import split as split_text
from policy_engine.codegen import generate, not_equal
from policy_engine.compile_terms import TermCompiler
from policy_engine.errors import TYPE_ERROR, EvalError
from policy_engine.runtime import ARRAYS, Ctx, Frame, ValueFn, index_value
from policy_engine.source import Span
from policy_engine.steps import OPERATORS, Builder
from policy_engine.terms import Scope
from policy_engine.values import UNDEFINED, FrozenDict, confusable, equal, freeze, holds_exactly

__all__ = ["MOCK_ROOTS", "CallCompiler", "member"]

# First element of the `ctx.overrides` keys of function replacements (rule paths start "data").
MOCK_ROOTS = frozenset({"<builtin>", "<function>"})


class CallCompiler(TermCompiler):
    """Compiles operators and calls; the statement layer subclasses it."""

    def binop(self, term: ast.BinOp, scope: Scope, hoists: list[Builder]) -> ValueFn:
        left = self.value(term.left, scope, hoists)
        right = self.value(term.right, scope, hoists)
        if term.op in ("==", "!="):
            return self.equality(term.op, [left, right], term.span, test=False)
        return self.builtin_call(self.builtins[OPERATORS[term.op]], [left, right], term.span)

    def equality(self, op: str, args: list[ValueFn], span: Span, test: bool) -> ValueFn:
        """`==` / `!=`: strings compare inline, everything else by Rego equality."""
        fn = equal if op == "==" else not_equal
        return self.builtin_call(
            Builtin(name=op, arity=2, fn=fn), args, span, test=test, string_op=op
        )

    def membership(
        self, term: ast.Membership, scope: Scope, hoists: list[Builder], test: bool = False
    ) -> ValueFn:
        """`x in c` / `k, x in c`; with `test`, whether it is true (see `builtin_call`)."""
        value = self.value(term.value, scope, hoists)
        coll = self.value(term.collection, scope, hoists)
        if term.key is None:
            return self.builtin_call(_MEMBER, [value, coll], term.span, test=test)
        key = self.value(term.key, scope, hoists)

        def contains(ctx: Ctx, f: Frame) -> Any:
            v = value(ctx, f)
            c = coll(ctx, f)
            if v is UNDEFINED or c is UNDEFINED:
                return UNDEFINED
            kv = key(ctx, f)
            if kv is UNDEFINED:
                return UNDEFINED
            found = index_value(c, kv)
            return found is not UNDEFINED and not isinstance(c, frozenset) and equal(found, v)

        return contains

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
            if target.signature is not None and target.signature.variadic:
                return None  # `print(x)` is never the relational form of a call
            arity: int = target.arity
            return arity
        if kind == "function":
            return self.index.groups[target].arity
        return None

    def mock_key(self, kind: str, target: Any) -> tuple[str, ...] | None:
        """The `ctx.overrides` key under which a `with` replaces this function, if any may."""
        if kind == "builtin":
            name = tuple(target.name.split("."))
            return ("<builtin>", *name) if name in self.mocked_names else None
        # A policy function: replaced by its name in the package or by its `data` path.
        if kind == "function" and (
            target in self.mocked_names or target[-1] in self._mocked_last_names
        ):
            return ("<function>", *target)
        return None

    def call(self, term: ast.Call, scope: Scope, hoists: list[Builder]) -> ValueFn:
        args = [self.value(a, scope, hoists) for a in term.args]
        original = self.direct_call(term, scope, args)
        kind, target = self.resolve_call(term.name, scope)
        key = self.mock_key(kind, target)
        if key is None:
            return original
        self.note_input()  # what it returns depends on the `with` in force

        def mockable(ctx: Ctx, f: Frame) -> Any:
            overrides = ctx.overrides
            if overrides is not None:
                mock = overrides.get(key)
                if mock is not None:
                    values = tuple([a(ctx, f) for a in args])
                    if any(v is UNDEFINED for v in values):
                        return UNDEFINED
                    return mock(ctx, values)
            return original(ctx, f)

        return mockable

    def direct_call(self, term: ast.Call, scope: Scope, args: list[ValueFn]) -> ValueFn:
        kind, target = self.resolve_call(term.name, scope)
        name = ".".join(term.name)
        if kind == "unknown":
            self.problem(TYPE_ERROR, f"unknown function `{name}`", term.span)
            return lambda ctx, f: UNDEFINED
        if kind == "builtin" and target.signature is not None and target.signature.variadic:
            return self.variadic_call(target, args)
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
        if 0 < len(args) <= 4:
            # A generated call site: constants and slots read inline, the operands'
            # own generated code inlined where it can be, and the site itself
            # inlinable into generated callers (`_value_sources`).
            env: dict[str, Any] = {"U": UNDEFINED, "func": func}
            lines, exprs = self.operands_source(args, env)
            source = "\n".join(
                ["def call(ctx, f):", *lines, f"    return func(ctx, ({', '.join(exprs)},))"]
            )
            site: ValueFn = generate(source + "\n", env, self._code_cache)
            self._value_sources[site] = (source + "\n", env)
            return site

        if len(args) == 1:
            (a0,) = args

            def call_user1(ctx: Ctx, f: Frame) -> Any:
                x = a0(ctx, f)
                return UNDEFINED if x is UNDEFINED else func(ctx, (x,))

            return call_user1
        if len(args) == 2:
            a0, a1 = args

            def call_user2(ctx: Ctx, f: Frame) -> Any:
                x, y = a0(ctx, f), a1(ctx, f)
                if x is UNDEFINED or y is UNDEFINED:
                    return UNDEFINED
                return func(ctx, (x, y))

            return call_user2

        def call_user(ctx: Ctx, f: Frame) -> Any:
            values = tuple([a(ctx, f) for a in args])
            if any(v is UNDEFINED for v in values):
                return UNDEFINED
            return func(ctx, values)

        return call_user

    def variadic_call(self, builtin: Builtin, args: list[ValueFn]) -> ValueFn:
        """`print(...)`: every operand is passed, an undefined one as UNDEFINED."""
        self.note_input()  # prints per evaluation, so never cached engine-wide
        fn = builtin.fn

        def call(ctx: Ctx, f: Frame) -> Any:
            return fn(ctx, *[arg(ctx, f) for arg in args])

        return call

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
            "index_value": index_value,
        }  # fmt: skip
        lines, operands = self.operands_source(args, env, "False" if test else "U")
        if string_op is not None:
            fast = _equality_with_constant(string_op, operands, env)
            if fast is not None and test and string_op == "==" and lines[-1:] == _FALSE:
                # `x == null`, `x == "text"`: an undefined `x` (UNDEFINED, not null, not
                # a string) fails the comparison itself, so it needs no test of its own.
                del lines[-2:]
            if fast is not None:  # null, a boolean or a string: no equality function
                source = "def call(ctx, f):\n" + "\n".join([*lines, f"    return {fast}"]) + "\n"
                compared: ValueFn = generate(source, env, self._code_cache)
                (self._test_sources if test else self._value_sources)[compared] = (source, env)
                if test and string_op == "==":
                    self._equality_tests[compared] = (args[0], args[1])
                return compared
        # Inline answers (a condition, a boolean expression) for operands of known types,
        # tried in order before the built-in.
        fast_paths: list[tuple[str, str]] = []
        if string_op is not None:  # `==`/`!=` on two strings needs no equality function
            a, b = operands
            constants = [env[o] for o in operands if o in env and o.startswith("c")]
            if constants and type(constants[0]) is int:
                # Against an integer constant, an int operand compares with Python's ==.
                other = b if a in env else a
                fast_paths.append((f"type({other}) is int", f"{a} {string_op} {b}"))
            elif not constants:
                fast_paths.append(
                    (f"type({a}) is str and type({b}) is str", f"{a} {string_op} {b}")
                )
        comparison = (
            _COMPARISONS.get(builtin.name)
            if builtin.fn is self.builtins.get(builtin.name, builtin).fn
            else None
        )
        if comparison is not None:
            # Two numbers (int or Decimal, exact either way) or two strings (code
            # points) order the same in Python as in Rego.
            a, b = operands
            env["Decimal"] = Decimal
            known = frozenset(
                o for o, arg in zip(operands, args, strict=True) if arg in self._numbers
            )
            condition = _ordered_types_test(a, b, env, known)
            if condition is not None:
                fast_paths.append((condition, f"{a} {comparison} {b}"))
        if builtin is _MEMBER:
            # A string in a set or array: Python's `in` (see `member`).
            value, coll = operands
            kinds = "(frozenset, tuple, list)"
            if coll in env and type(env[coll]) in (frozenset, tuple, list):
                fast_paths.append((f"type({value}) is str", f"{value} in {coll}"))
            else:
                fast_paths.append(
                    (f"type({value}) is str and type({coll}) in {kinds}", f"{value} in {coll}")
                )
        if builtin.context:
            # The built-in reads the evaluation (clock, seed, hooks): its rule is
            # evaluated per evaluation, never kept in the engine-wide cache.
            self.note_input()
            operands = ["ctx", *operands]
        call_line = f"        r = fn({', '.join(operands)})"
        stock = BUILTINS.get(builtin.name)
        on_text = (
            _ON_TEXT.get(builtin.name) if stock is not None and stock.fn is builtin.fn else None
        )
        if on_text is not None:
            # The common case, every operand a string, without the type checks.
            template, helpers = on_text
            # A constant operand's type is known now: only the others are tested.
            variables = [o for o in operands if not _is_constant(o, env)]
            if all(type(env[o]) is str for o in operands if o not in variables):
                env.update(helpers)
                fast = template.format(*operands)
                strings = " and ".join(f"type({o}) is str" for o in variables)
                call_line = (
                    f"        r = {fast} if {strings} else fn({', '.join(operands)})"
                    if strings
                    else f"        r = {fast}"
                )
        if builtin.name == "count" and stock is not None and stock.fn is builtin.fn:
            # `count` of a string, array, set or object is Python's len (code points of
            # a string); other types go to the built-in for its error.
            env["counted"] = _COUNTED
            (item,) = operands
            call_line = f"        r = len({item}) if type({item}) in counted else fn({item})"
        try_at = len(lines)
        lines.append("    try:")
        if builtin.name == "glob.match" and operands[1] == "c1" and env.get("c1") is None:
            # The built-in's own fast path (no delimiters, two strings), inlined:
            # the same cached regex, one call less per pattern in allow-list loops.
            # Each call site keeps the matchers of the patterns it met (bounded: patterns
            # may come from input), so an allow-list loop costs one dict lookup per pattern.
            pattern, _none, value = operands
            env["compile_glob"], env["seen"], env["limit"] = compile_glob, {}, 256
            lines.append(f"        if type({pattern}) is str and type({value}) is str:")
            lines.append(f"            match = seen.get({pattern})")
            lines.append("            if match is None:")
            lines.append(f'                match = compile_glob({pattern}, "").fullmatch')
            lines.append("                if len(seen) < limit:")
            lines.append(f"                    seen[{pattern}] = match")
            lines.append(f"            r = match({value}) is not None")
            lines.append("        else:")
            lines.append("    " + call_line)
        elif builtin.name == "regex.match" and stock is not None and stock.fn is builtin.fn:
            # The same (pattern, string) pairs recur at a call site (a key's expiry on
            # each of its requests, the request's time within a second): each call site
            # keeps the answers it worked out for two strings, bounded (both may come
            # from input; emptied when full). An answer depends on the two strings
            # alone; a pattern that does not parse is never kept, so the built-in
            # raises its error on every call.
            pattern, value = operands
            env["matched"], env["limit"] = {}, 256
            if _is_constant(pattern, env) and type(env[pattern]) is str:
                # The policy's own pattern (the usual case): the answers are keyed by
                # the string alone, and only its type is tested.
                lines.append(f"        if type({value}) is str:")
                pair = value
            else:
                lines.append(f"        if type({pattern}) is str and type({value}) is str:")
                lines.append(f"            pair = ({pattern}, {value})")
                pair = "pair"
            lines.append(f"            r = matched.get({pair})")
            lines.append("            if r is None:")
            lines.append(f"                r = fn({pattern}, {value})")
            lines.append("                if len(matched) >= limit:")
            lines.append("                    matched.clear()")
            lines.append(f"                matched[{pair}] = r")
            lines.append("        else:")
            lines.append("    " + call_line)
        else:
            lines.append(call_line)
        lines.append("    except BuiltinError as exc:")
        if test:
            # `failed` raises or answers undefined: the test fails, a constant exit
            # that lets an inlined test skip its flag (`codegen.open_test`).
            lines.append("        failed(ctx, exc)\n        return False")
        else:
            lines.append("        return failed(ctx, exc)")
        if test and (
            string_op is not None
            or (builtin.name in _BOOLEAN and stock is not None and stock.fn is builtin.fn)
        ):
            final = "    return r"  # true or false, never undefined
        else:
            final = "    return r is not False and r is not U" if test else "    return r"
        early = [
            f"    if {condition}:\n        return {answer}" for condition, answer in fast_paths
        ]
        source = (
            "def call(ctx, f):\n"
            + "\n".join([*lines[:try_at], *early, *lines[try_at:], final])
            + "\n"
        )
        inlined = source
        if test and fast_paths:
            # Inlined, a fast path's answer is the result (`r`), not an early return:
            # every early exit of the test is then a failure, so the test needs no
            # flag (`codegen.open_test`). Called, the early return is shorter.
            choices = [
                f"    {'if' if i == 0 else 'elif'} {condition}:\n        r = {answer}"
                for i, (condition, answer) in enumerate(fast_paths)
            ]
            tried = ["    " + line.replace("\n", "\n    ") for line in lines[try_at:]]
            body = [*lines[:try_at], *choices, "    else:", *tried, final]
            inlined = "def call(ctx, f):\n" + "\n".join(body) + "\n"
        call: ValueFn = generate(source, env, self._code_cache)
        if "compile_glob" in env and test:
            self._glob_tests[call] = (args[0], args[2])
        if test and string_op == "==":
            self._equality_tests[call] = (args[0], args[1])
        (self._test_sources if test else self._value_sources)[call] = (inlined, env)
        if (
            not test
            and builtin.name == "to_number"
            and stock is not None
            and stock.fn is builtin.fn
        ):
            self._numbers.add(call)
        return call


_COMPARISONS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}

# The last line of operands' undefined test in a condition (`operands_source`).
_FALSE = ["        return False"]

# Stock built-ins whose answer (when they do not fail) is always a boolean.
_BOOLEAN = frozenset({"regex.match", "glob.match", "lt", "lte", "gt", "gte", "equal", "neq"})

# The exact types `count` measures with len (FrozenDict is an object).
_COUNTED = frozenset({str, tuple, list, dict, frozenset, FrozenDict})


def _is_constant(operand: str, env: dict[str, Any]) -> bool:
    """Whether a generated operand is a constant (`c{i}` in the globals)."""
    return operand.startswith("c") and operand in env


def _constant_kind(value: Any) -> str:
    kind = type(value)
    return "number" if kind is int or kind is Decimal else "string" if kind is str else "other"


def _ordered_types_test(
    a: str, b: str, env: dict[str, Any], numbers_known: frozenset[str] = frozenset()
) -> str | None:
    """An expression true when operands `a` and `b` are two numbers (int or Decimal)
    or two strings, which Python orders as Rego does; a constant's type is tested now,
    not per call (None when a constant is neither), and so is that of an operand in
    `numbers_known` (a `to_number` result: an int or a Decimal once defined)."""
    numbers = {o: f"(type({o}) is int or type({o}) is Decimal)" for o in (a, b)}
    strings = {o: f"type({o}) is str" for o in (a, b)}
    kinds = {o: _constant_kind(env[o]) for o in (a, b) if _is_constant(o, env)}
    kinds.update((o, "number") for o in (a, b) if o in numbers_known)
    if len(kinds) == 2:
        return "True" if kinds[a] == kinds[b] != "other" else None
    for const, kind in kinds.items():
        other = b if const == a else a
        if kind == "other":
            return None
        return numbers[other] if kind == "number" else strings[other]
    return f"({numbers[a]} and {numbers[b]}) or ({strings[a]} and {strings[b]})"


# Built-ins on string operands as Python expressions (the same functions the
# built-ins apply once their operands are checked), with the helpers they use.
_ON_TEXT: dict[str, tuple[str, dict[str, Any]]] = {
    "to_number": ("parse_number({0})", {"parse_number": parse_number}),
    "contains": ("{1} in {0}", {}),
    "startswith": ("{0}.startswith({1})", {}),
    "endswith": ("{0}.endswith({1})", {}),
    "lower": ("{0}.lower()", {}),
    "upper": ("{0}.upper()", {}),
    "split": ("split_text({0}, {1})", {"split_text": split_text}),
}


def member(v: Any, c: Any) -> bool:
    """`v in c`: a member of a set, an element of an array, a value of an object."""
    if type(v) is str:
        # A string equals only an equal string, so Python's `in` is Rego's.
        kind = type(c)
        if kind is frozenset or kind is tuple or kind is list:
            return v in c
        if kind is dict:
            return v in c.values()
    if isinstance(c, frozenset):
        try:
            frozen = freeze(v)
            found = frozen in c
        except TypeError:
            return False
        # Python finds 1 in {true}: confirm such a hit the Rego way.
        return found and (not confusable(frozen) or holds_exactly(c, frozen))
    values = c.values() if isinstance(c, dict) else c if isinstance(c, ARRAYS) else ()
    return any(equal(v, item) for item in values)


_MEMBER = Builtin(name="internal.member", arity=2, fn=member)


def _equality_with_constant(op: str, operands: list[str], env: dict[str, Any]) -> str | None:
    """`x == c` / `x != c` as a Python expression when the constant `c` makes it
    exact without Rego's equality: null and booleans by identity, strings by type
    and `==` (a string equals only an equal string)."""
    for const, other in ((operands[0], operands[1]), (operands[1], operands[0])):
        if not const.startswith("c") or const not in env:
            continue
        value = env[const]
        if value is None or type(value) is bool:
            return f"{other} is {const}" if op == "==" else f"{other} is not {const}"
        if type(value) is str:
            same = f"(type({other}) is str and {other} == {const})"
            return same if op == "==" else f"not {same}"
    return None
