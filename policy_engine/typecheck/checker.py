"""The type checker: OPA's `rego_type_error`s, found before compilation.

What it types, as OPA's `ast/check.go` does: literals, collections and
comprehensions; built-in calls against the registry's signatures (operators
are their built-ins: `+` is `plus`); rule values (complete, partial set,
partial object, function results) in dependency order, so `data.p.r` and a
rule's name have its type; references walked through those types, and through
`input`'s type when a JSON Schema gives one (`schema.py`).

It reports only what OPA reports, and when in doubt it accepts: an unknown
type is `any`, which unifies with everything; a variable seen before the
statement that binds it (the compiler reorders statements, this checker reads
them in order) stays unknown; a statement with `with` is not checked (what it
replaces may change any type), nor is the body of `every` (OPA does not check
it either); calls of policy functions are not checked against the types OPA
infers for their arguments. A rule with an error gets
type `any`, so one mistake is reported once, where it is.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from policy_engine import ast
from policy_engine.builtins import signature as declared_signature
from policy_engine.errors import TYPE_ERROR, Diagnostic
from policy_engine.index import TREE_KINDS, RuleIndex
from policy_engine.source import Span
from policy_engine.typecheck.types import (
    ANY,
    BOOLEAN,
    NULL,
    NUMBER,
    STRING,
    Arr,
    Func,
    Obj,
    SetOf,
    Type,
    Union,
    from_signature,
    join,
    keys_of,
    select,
    show,
    unifies,
    values_of,
)

__all__ = ["TypeChecker"]

Path = tuple[str, ...]

OPERATORS: Mapping[str, str] = {
    "+": "plus",
    "-": "minus",
    "*": "mul",
    "/": "div",
    "%": "rem",
    "&": "and",
    "|": "or",
    "==": "equal",
    "!=": "neq",
    "<": "lt",
    "<=": "lte",
    ">": "gt",
    ">=": "gte",
}

_NOT_CONSTANT = object()

_SCALAR_TERMS: Mapping[type, Type] = {
    ast.StringLit: STRING,
    ast.NumberLit: NUMBER,
    ast.BoolLit: BOOLEAN,
    ast.NullLit: NULL,
}


def _constant_key(term: ast.Term) -> object:
    """A scalar term's value as a key (`_NOT_CONSTANT` for anything else)."""
    if isinstance(term, ast.StringLit):
        return term.value
    if isinstance(term, ast.Var | ast.Ref):
        return _NOT_CONSTANT
    if isinstance(term, ast.BoolLit):
        return term.value
    if isinstance(term, ast.NullLit):
        return None
    if isinstance(term, ast.NumberLit):
        number = Decimal(term.text)
        return int(number) if number == number.to_integral_value() else float(number)
    return _NOT_CONSTANT


def _ref_text(head: str, path: tuple[ast.Term, ...], upto: int) -> str:
    """The reference as written, up to and including `path[upto]`."""
    parts = [head]
    for item in path[: upto + 1]:
        if isinstance(item, ast.StringLit) and item.value.isidentifier():
            parts.append(f".{item.value}")
        else:
            parts.append(f"[{_key_text(item)}]")
    return "".join(parts)


def _key_text(term: ast.Term) -> str:
    if isinstance(term, ast.StringLit):
        return f'"{term.value}"'
    if isinstance(term, ast.NumberLit):
        return term.text
    if isinstance(term, ast.BoolLit):
        return "true" if term.value else "false"
    if isinstance(term, ast.NullLit):
        return "null"
    if isinstance(term, ast.Var):
        return term.name
    return "…"


def _head_text(term: ast.Term) -> str:
    if isinstance(term, ast.Var):
        return term.name
    if isinstance(term, ast.ArrayTerm | ast.ArrayCompr):
        return "[…]"
    if isinstance(term, ast.SetTerm | ast.ObjectTerm | ast.SetCompr | ast.ObjectCompr):
        return "{…}"
    if isinstance(term, ast.Call):
        return ".".join(term.name) + "(…)"
    return _key_text(term)


class _Env:
    """Variable types of one body; a closure (comprehension, every, not) gets a child."""

    def __init__(self, parent: _Env | None, declared: set[str]) -> None:
        self.parent = parent
        self.declared = declared
        self.vars: dict[str, Type] = {}

    def get(self, name: str) -> Type | None:
        env: _Env | None = self
        while env is not None:
            found = env.vars.get(name)
            if found is not None:
                return found
            env = env.parent
        return None

    def is_local(self, name: str) -> bool:
        env: _Env | None = self
        while env is not None:
            if name in env.vars or name in env.declared:
                return True
            env = env.parent
        return False


def _declared(body: ast.Body) -> set[str]:
    """Names a body declares (`:=`, `some`, `every`), which shadow rules of the same name."""
    names: set[str] = set()
    for literal in body:
        expr = literal.expr
        if isinstance(expr, ast.Assign):
            names.update(_pattern_vars(expr.target))
        elif isinstance(expr, ast.SomeVars):
            names.update(var.name for var in expr.names)
        elif isinstance(expr, ast.SomeIn):
            names.update(_pattern_vars(expr.value))
            if expr.key is not None:
                names.update(_pattern_vars(expr.key))
    return names


def _pattern_vars(term: ast.Term) -> Iterator[str]:
    if isinstance(term, ast.Var):
        yield term.name
    elif isinstance(term, ast.ArrayTerm):
        for item in term.items:
            yield from _pattern_vars(item)
    elif isinstance(term, ast.ObjectTerm):
        for entry in term.items:
            yield from _pattern_vars(entry.value)


class TypeChecker:
    """Types every rule group of an index; `diagnostics` collects the errors."""

    def __init__(
        self, index: RuleIndex, input_type: Type = ANY, input_source: str | None = None
    ) -> None:
        self.index = index
        self.input_type = input_type
        self.input_source = input_source
        self.diagnostics: list[Diagnostic] = []
        self._types: dict[Path, Type] = {}
        self._typing: set[Path] = set()
        self._names: dict[int, dict[str, Path]] = {}
        self._quiet = 0
        self._failed = False
        self._signatures: dict[str, Func] = {}
        # One handler per kind of term (scalars are `_SCALAR_TERMS`): a dict lookup,
        # not a chain of isinstance tests, since every term of every rule comes here.
        self._handlers: dict[type, Callable[[Any, _Env, ast.Module | None], Type | None]] = {
            ast.Var: self.var,
            ast.Ref: self.ref,
            ast.Call: self.call,
            ast.BinOp: self._binop,
            ast.ArrayTerm: self._array,
            ast.SetTerm: self._set,
            ast.ObjectTerm: self._object,
            ast.ArrayCompr: self._collection,
            ast.SetCompr: self._collection,
            ast.ObjectCompr: self._object_compr,
            ast.UnaryMinus: self._minus,
            ast.Membership: self._membership,
        }

    # ---- driving ---------------------------------------------------------------------

    def check_all(self) -> list[Diagnostic]:
        for path in self.index.groups:
            self.group_type(path)
        return self.diagnostics

    def group_type(self, path: Path) -> Type:
        """The type of a rule group's value (a `Func` for a function), typing it once."""
        known = self._types.get(path)
        if known is not None:
            return known
        if path in self._typing:  # recursion is reported by its own stage
            return ANY
        self._typing.add(path)
        group = self.index.groups[path]
        failed_before, self._failed = self._failed, False
        # A rule first reached from a quiet statement is still checked in full.
        quiet_before, self._quiet = self._quiet, 0
        kinds: list[Type | None] = []
        for module, rule in group.definitions:
            kinds.extend(self._rule_types(module, rule))
        if group.default is not None:
            kinds.append(self.term(group.default.value, _Env(None, set()), None))
        result: Type = ANY
        if group.kind == "function":
            # Every definition's result (a default's value is one too); arguments stay `any`.
            results = [kind.result if isinstance(kind, Func) else kind for kind in kinds]
            result = Func(tuple(ANY for _ in range(group.arity)), join(*results))
        elif kinds:
            result = join(*kinds)
        if self._failed or (
            group.kind in TREE_KINDS and (group.kind == "general" or path in self.index.namespaces)
        ):
            result = ANY  # errors stay where they are; merged key trees are not typed
        self._failed = failed_before or self._failed
        self._quiet = quiet_before
        self._types[path] = result
        self._typing.discard(path)
        return result

    def _rule_types(self, module: ast.Module, rule: ast.Rule) -> Iterator[Type | None]:
        if isinstance(rule, ast.CompleteRule):
            yield self._valued_body(module, rule.body, rule.value, set())
            for branch in rule.elses:
                yield self._valued_body(module, branch.body, branch.value, set())
        elif isinstance(rule, ast.FunctionRule):
            params = set(_arg_vars(rule.args))
            results = [self._valued_body(module, rule.body, rule.value, params)]
            for branch in rule.elses:
                results.append(self._valued_body(module, branch.body, branch.value, params))
            yield Func(tuple(ANY for _ in rule.args), join(*results))
        elif isinstance(rule, ast.PartialSetRule):
            env = self._body_env(module, rule.body, set())
            yield SetOf(join(self.term(rule.element, env, module)))
        elif isinstance(rule, ast.PartialObjectRule):
            env = self._body_env(module, rule.body, set())
            key = self.term(rule.key, env, module)
            value = BOOLEAN if rule.value is None else self.term(rule.value, env, module)
            yield Obj((), join(key), join(value))
        elif isinstance(rule, ast.GeneralRule):
            env = self._body_env(module, rule.body, set())
            for part in rule.keys:
                self.term(part, env, module)
            if rule.value is not None:
                self.term(rule.value, env, module)
            yield ANY

    def _valued_body(
        self, module: ast.Module, body: ast.Body, value: ast.Term | None, params: set[str]
    ) -> Type | None:
        env = self._body_env(module, body, params)
        return BOOLEAN if value is None else self.term(value, env, module)

    def _body_env(self, module: ast.Module, body: ast.Body, params: set[str]) -> _Env:
        env = _Env(None, _declared(body) | params)
        for name in params:
            env.vars[name] = ANY
        self.body(body, env, module)
        return env

    # ---- names ---------------------------------------------------------------------------

    def _module_names(self, module: ast.Module) -> dict[str, Path]:
        names = self._names.get(id(module))
        if names is None:
            prefix = ("data", *module.package)
            names = {name: (*prefix, name) for name in self.index.children(prefix)}
            for imp in module.imports:
                if imp.path[0] in ("data", "input") and len(imp.path) > 1:
                    names[imp.alias or imp.path[-1]] = imp.path
            self._names[id(module)] = names
        return names

    def _global(self, name: str, env: _Env, module: ast.Module | None) -> Path | None:
        if name in ("input", "data"):
            return (name,)
        if module is None or env.is_local(name):
            return None
        return self._module_names(module).get(name)

    # ---- errors --------------------------------------------------------------------------

    def error(self, message: str, span: Span) -> None:
        if self._quiet:
            return
        self._failed = True
        self.diagnostics.append(Diagnostic.at(TYPE_ERROR, message, span))

    # ---- bodies ----------------------------------------------------------------------

    def body(self, body: ast.Body, env: _Env, module: ast.Module | None) -> None:
        for literal in body:
            quiet = bool(literal.withs)
            self._quiet += quiet
            try:
                target = _Env(env, set()) if literal.negated else env
                self.statement(literal.expr, target, module, literal.span)
            finally:
                self._quiet -= quiet

    def statement(self, expr: ast.Expr, env: _Env, module: ast.Module | None, span: Span) -> None:
        if isinstance(expr, ast.Assign):
            self.unify(expr.target, expr.value, env, module, expr.span)
        elif isinstance(expr, ast.Unify):
            self.unify(expr.left, expr.right, env, module, expr.span)
        elif isinstance(expr, ast.BinOp) and expr.op == "==":
            # OPA rewrites a statement `a == b` into `a = b` (its RewriteEquals stage)
            # and type-checks that unification: two known types that cannot be equal
            # are a match error. `==` inside a value (`x := a == b`) stays a call.
            left = self.term(expr.left, env, module)
            right = self.term(expr.right, env, module)
            if left is not None and right is not None and not unifies(left, right):
                self.error(
                    f"match error: the left side is {show(left)}, the right side "
                    f"{show(right)}; these can never be equal",
                    expr.span,
                )
        elif isinstance(expr, ast.SomeVars):
            return
        elif isinstance(expr, ast.SomeIn):
            collection = _or_any(self.term(expr.collection, env, module))
            self.bind(expr.value, _or_any(values_of(collection)), env)
            if expr.key is not None:
                self.bind(expr.key, _or_any(keys_of(collection)), env)
        elif isinstance(expr, ast.Every):
            domain = _or_any(self.term(expr.domain, env, module))
            inner = _Env(env, _declared(expr.body))
            inner.vars[expr.value.name] = _or_any(values_of(domain))
            if expr.key is not None:
                inner.vars[expr.key.name] = _or_any(keys_of(domain))
            # OPA does not type-check the body of `every` (its errors are evaluation errors).
            self._quiet += 1
            try:
                self.body(expr.body, inner, module)
            finally:
                self._quiet -= 1
        else:
            self.term(expr, env, module)

    # ---- unification -------------------------------------------------------------------

    def unify(
        self, left: ast.Term, right: ast.Term, env: _Env, module: ast.Module | None, span: Span
    ) -> None:
        """`left = right` (and `:=`): check two known types, else type the unknown side."""
        left_type = self.term(left, env, module)
        right_type = self.term(right, env, module)
        if left_type is not None and right_type is not None:
            if not unifies(left_type, right_type):
                self.error(
                    f"match error: the left side is {show(left_type)}, the right side "
                    f"{show(right_type)}; these can never be equal",
                    span,
                )
        elif left_type is None and right_type is not None:
            if not self.bind(left, right_type, env):
                self._match_error(left, right_type, span)
        elif right_type is None and left_type is not None:
            if not self.bind(right, left_type, env):
                self._match_error(right, left_type, span)
        else:
            self.bind(left, ANY, env)
            self.bind(right, ANY, env)

    def _match_error(self, pattern: ast.Term, kind: Type, span: Span) -> None:
        shape = "an array" if isinstance(pattern, ast.ArrayTerm) else "an object"
        self.error(f"match error: {shape} pattern cannot match {show(kind)}", span)

    def bind(self, pattern: ast.Term, kind: Type, env: _Env) -> bool:
        """Give the unbound variables of a pattern the types `kind` implies (False: cannot)."""
        if isinstance(pattern, ast.Var):
            if pattern.name == "_":
                return True
            known = env.get(pattern.name)
            if known is None:
                env.vars[pattern.name] = kind
                return True
            return unifies(known, kind)
        if kind == ANY or isinstance(kind, Union):
            for name in _pattern_vars(pattern):
                if name != "_" and env.get(name) is None:
                    env.vars[name] = ANY
            return True
        if isinstance(pattern, ast.ArrayTerm):
            if not isinstance(kind, Arr):
                return False
            if kind.rest is None and len(kind.items) != len(pattern.items):
                return False
            return all(
                self.bind(item, kind.items[i] if i < len(kind.items) else _or_any(kind.rest), env)
                for i, item in enumerate(pattern.items)
            )
        if isinstance(pattern, ast.ObjectTerm):
            if not isinstance(kind, Obj):
                return False
            ok = True
            for entry in pattern.items:
                key = _constant_key(entry.key)
                value = ANY if key is _NOT_CONSTANT else select(kind, key)
                if value is None:
                    return False
                ok = self.bind(entry.value, value, env) and ok
            return ok
        return True

    # ---- terms --------------------------------------------------------------------------

    def term(self, term: ast.Term, env: _Env, module: ast.Module | None) -> Type | None:
        """The term's type; None while a variable in it is still unbound."""
        scalar = _SCALAR_TERMS.get(type(term))
        if scalar is not None:
            return scalar
        handler = self._handlers.get(type(term))
        if handler is None:
            raise AssertionError(f"the type checker does not know {type(term).__name__} terms")
        return handler(term, env, module)

    def _array(self, term: ast.ArrayTerm, env: _Env, module: ast.Module | None) -> Type | None:
        if not term.items:
            return Arr((), ANY)  # OPA looks anything up in `[]` and `{}` without an error
        items = [self.term(item, env, module) for item in term.items]
        if any(item is None for item in items):
            return None
        return Arr(tuple(item for item in items if item is not None), None)

    def _set(self, term: ast.SetTerm, env: _Env, module: ast.Module | None) -> Type | None:
        items = [self.term(item, env, module) for item in term.items]
        if any(item is None for item in items):
            return None
        return SetOf(join(*items)) if items else SetOf(ANY)

    def _collection(
        self, term: ast.ArrayCompr | ast.SetCompr, env: _Env, module: ast.Module | None
    ) -> Type:
        inner = _Env(env, _declared(term.body))
        self.body(term.body, inner, module)
        of = join(self.term(term.term, inner, module))
        return Arr((), of) if isinstance(term, ast.ArrayCompr) else SetOf(of)

    def _object_compr(self, term: ast.ObjectCompr, env: _Env, module: ast.Module | None) -> Type:
        inner = _Env(env, _declared(term.body))
        self.body(term.body, inner, module)
        key = join(self.term(term.key, inner, module))
        return Obj((), key, join(self.term(term.value, inner, module)))

    def _binop(self, term: ast.BinOp, env: _Env, module: ast.Module | None) -> Type | None:
        return self.builtin_call(
            OPERATORS[term.op], (term.left, term.right), env, module, term.span, term.op
        )

    def _minus(self, term: ast.UnaryMinus, env: _Env, module: ast.Module | None) -> Type:
        self.term(term.operand, env, module)
        return NUMBER

    def _membership(self, term: ast.Membership, env: _Env, module: ast.Module | None) -> Type:
        for part in (term.key, term.value, term.collection):
            if part is not None:
                self.term(part, env, module)
        return BOOLEAN

    def _object(self, term: ast.ObjectTerm, env: _Env, module: ast.Module | None) -> Type | None:
        props: dict[str, Type] = {}
        keys: list[Type] = []
        values: list[Type] = []
        unknown = False
        for entry in term.items:
            key_type = self.term(entry.key, env, module)
            value_type = self.term(entry.value, env, module)
            if key_type is None or value_type is None:
                unknown = True
                continue
            key = _constant_key(entry.key)
            if isinstance(key, str):
                props[key] = value_type  # a repeated key keeps its last value
            else:
                keys.append(key_type)
                values.append(value_type)
        if unknown:
            return None
        if not term.items:
            return Obj((), ANY, ANY)
        if keys:
            return Obj(tuple(props.items()), join(*keys, *([STRING] if props else [])), ANY)
        return Obj(tuple(props.items()), None, None)

    def var(self, term: ast.Var, env: _Env, module: ast.Module | None) -> Type | None:
        if term.name == "_":
            return None
        local = env.get(term.name)
        if local is not None:
            return local
        path = self._global(term.name, env, module)
        if path is None:
            return None
        return self.path_type(path)

    def path_type(self, path: Path) -> Type:
        """The type of a static `data.…` or `input.…` path (`any` for base data)."""
        if path[0] == "input":
            kind: Type | None = self.input_type
            for key in path[1:]:
                kind = select(kind, key) if kind is not None else None
            return _or_any(kind)
        for i in range(len(path), 1, -1):
            if path[:i] in self.index.groups:
                group_type = self.group_type(path[:i])
                kind = group_type
                for key in path[i:]:
                    kind = select(kind, key) if kind is not None else None
                return _or_any(kind)
        return ANY

    # ---- references -----------------------------------------------------------------------

    def ref(self, term: ast.Ref, env: _Env, module: ast.Module | None) -> Type | None:
        head = term.head
        path = term.path
        start = 0
        head_name = ""
        kind: Type | None
        if isinstance(head, ast.Var):
            head_name = head.name
            local = env.get(head.name)
            root = None if local is not None else self._global(head.name, env, module)
            if local is not None:
                kind = local
            elif root is None:
                # An unbound variable as a head (unsafe, reported elsewhere).
                for item in path:
                    self.term(item, env, module)
                return None
            else:
                if root[0] == "input":
                    kind = self.path_type(root)
                    return self._walk(kind, term, env, module, head_name, 0, input_ref=True)
                kind, start = self._root(root, path)
        else:
            kind = self.term(head, env, module)
            head_name = _head_text(head)
        if kind is None:
            for item in path:
                self.term(item, env, module)
            return None
        return self._walk(kind, term, env, module, head_name, start)

    def _root(self, root: Path, path: tuple[ast.Term, ...]) -> tuple[Type, int]:
        """The type of the longest rule path a `data` reference names, and how far it reads."""
        full = list(root)
        for item in path:
            if not isinstance(item, ast.StringLit):
                break
            full.append(item.value)
        for i in range(len(full), 1, -1):
            if tuple(full[:i]) in self.index.groups:
                kind = self.group_type(tuple(full[:i]))
                return kind, max(0, i - len(root))
        return ANY, 0

    def _walk(
        self,
        kind: Type,
        term: ast.Ref,
        env: _Env,
        module: ast.Module | None,
        head_name: str,
        start: int,
        input_ref: bool = False,
    ) -> Type | None:
        """Walk the reference's path from position `start` through `kind` (OPA's checkRefLeaf)."""
        path = term.path
        for item in path[:start]:
            self.term(item, env, module)
        current: Type = kind
        for i in range(start, len(path)):
            item = path[i]
            if current is ANY:
                for rest in path[i:]:
                    self._key_term(rest, ANY, env, module)
                return ANY
            if isinstance(current, Func):
                return ANY
            key = _constant_key(item)
            found = None if key is _NOT_CONSTANT else select(current, key)
            if found is not None:
                current = found
                continue
            keys = keys_of(current)
            if keys is None:
                self.error(
                    f"undefined ref: {_ref_text(head_name, path, i)}: "
                    f"{_ref_text(head_name, path, i - 1)} is {show(current)}, "
                    "which has no elements to look up",
                    item.span,
                )
                return ANY
            if key is not _NOT_CONSTANT:
                self._undefined_key(current, key, head_name, path, i, input_ref)
                return ANY
            item_type = self._key_term(item, keys, env, module)
            if item_type is not None and not unifies(item_type, keys):
                self.error(
                    f"undefined ref: {_ref_text(head_name, path, i)}: the key is "
                    f"{show(item_type)} but {_ref_text(head_name, path, i - 1)} "
                    f"({show(current)}) has keys of type {show(keys)}",
                    item.span,
                )
                return ANY
            values = values_of(current)
            current = ANY if values is None else values
        return current

    def _key_term(
        self, item: ast.Term, keys: Type, env: _Env, module: ast.Module | None
    ) -> Type | None:
        """A non-constant key: an unbound variable gets the key type, others are typed."""
        if isinstance(item, ast.Var) and item.name == "_":
            return None
        if isinstance(item, ast.Var | ast.ArrayTerm | ast.ObjectTerm):
            kind = self.term(item, env, module)
            if kind is None:
                self.bind(item, keys, env)
            return kind
        return self.term(item, env, module)

    def _undefined_key(
        self,
        current: Type,
        key: object,
        head_name: str,
        path: tuple[ast.Term, ...],
        i: int,
        input_ref: bool,
    ) -> None:
        where = _ref_text(head_name, path, i - 1)
        message = f"undefined ref: {_ref_text(head_name, path, i)}: "
        fields = _field_names(current)
        if isinstance(key, str) and fields:
            message += f"{where} has no field `{key}`"
            close = difflib.get_close_matches(key, fields, n=1)
            if close:
                message += f"; did you mean `{close[0]}`?"
            else:
                message += f"; its fields are {', '.join(sorted(fields))}"
        else:
            message += f"{where} is {show(current)}, which has no element {_key_text(path[i])}"
        if input_ref and self.input_source:
            message += f" (input schema {self.input_source})"
        self.error(message, path[i].span)

    # ---- calls ---------------------------------------------------------------------------

    def call(self, term: ast.Call, env: _Env, module: ast.Module | None) -> Type | None:
        name = term.name
        path: Path | None = None
        if name[0] == "data":
            path = name
        elif module is not None and not env.is_local(name[0]):
            root = self._module_names(module).get(name[0])
            if root is not None and root[0] == "data":
                path = (*root, *name[1:])
        if path is not None and path in self.index.groups:
            kind = self.group_type(path)
            result = kind.result if isinstance(kind, Func) else ANY
            self._user_call(term, result, env, module)
            return result
        return self.builtin_call(".".join(name), term.args, env, module, term.span, None)

    def _user_call(
        self, term: ast.Call, result: Type, env: _Env, module: ast.Module | None
    ) -> None:
        # Arity is the compiler's check; an extra argument receives the result.
        del result
        for arg in term.args:
            if self.term(arg, env, module) is None:
                self.bind(arg, ANY, env)

    def builtin_call(
        self,
        name: str,
        args: tuple[ast.Term, ...],
        env: _Env,
        module: ast.Module | None,
        span: Span,
        operator: str | None,
    ) -> Type | None:
        declared = declared_signature(name)
        if declared is None:
            for arg in args:
                if self.term(arg, env, module) is None:
                    self.bind(arg, ANY, env)
            return ANY
        signature = self._signatures.get(name)
        if signature is None:
            signature = self._signatures[name] = from_signature(declared)
        if signature.variadic:
            for arg in args:
                if self.term(arg, env, module) is None:
                    self.bind(arg, ANY, env)
            return signature.result
        arity = len(signature.args)
        have = [self.term(arg, env, module) for arg in args[:arity]]
        for position, (arg, kind) in enumerate(zip(args[:arity], have, strict=True)):
            want = signature.args[position]
            if kind is None or kind is ANY or want is ANY:
                continue  # unknown: bound later (the compiler reorders) or a pattern
            if not unifies(kind, want):
                shown = operator or name
                params = ", ".join(
                    f"{p.name}: {show(t)}"
                    for p, t in zip(declared.params, signature.args, strict=True)
                )
                self.error(
                    f"{shown}: invalid argument(s): have ({', '.join(show(t) for t in have)}), "
                    f"want ({params})",
                    arg.span if operator is None else span,
                )
                return ANY
        if len(args) > arity:  # `count(xs, n)`: the last argument receives the result
            out = args[arity]
            out_type = self.term(out, env, module)
            if out_type is None:
                self.bind(out, signature.result, env)
            elif not unifies(out_type, signature.result):
                self.error(
                    f"{name}: invalid argument(s): the result is {show(signature.result)}, "
                    f"it cannot be {show(out_type)}",
                    out.span,
                )
        return signature.result


def _arg_vars(args: tuple[ast.Term, ...]) -> Iterator[str]:
    for arg in args:
        yield from (name for name in _all_vars(arg) if name != "_")


def _all_vars(term: ast.Term) -> Iterator[str]:
    if isinstance(term, ast.Var):
        yield term.name
    elif isinstance(term, ast.ArrayTerm | ast.SetTerm):
        for item in term.items:
            yield from _all_vars(item)
    elif isinstance(term, ast.ObjectTerm):
        for entry in term.items:
            yield from _all_vars(entry.value)


def _field_names(kind: Type) -> list[str]:
    if isinstance(kind, Obj):
        return [name for name, _ in kind.props]
    if isinstance(kind, Union):
        return [name for option in kind.options for name in _field_names(option)]
    return []


def _or_any(kind: Type | None) -> Type:
    return ANY if kind is None else kind
