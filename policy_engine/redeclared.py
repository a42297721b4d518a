"""Reject `:=` to a name that is already in use, as OPA's compiler does.

`:=` declares a new local variable, so assigning a name a second time is a
mistake the author should hear about at load time rather than a silent
unification. OPA tracks, per scope (rule body, comprehension, `every` body),
how each name was first met, and rejects a later `:=` to it:

- `x := 1; x := 2`           -> `var x assigned above`
- `some x; x := 1`           -> `var x declared above`
- `x == 1; x := 2`           -> `var x referenced above`
- `f(x) if { x := 1 }`       -> `arg x redeclared`
- `input := 1`, `data := 1`  -> `variables must not shadow input`
- `not x := 1`               -> `not` cannot negate an assignment

Only the innermost scope counts: a comprehension may declare a name its
enclosing body already uses (it shadows it), exactly as in OPA. Rule names and
import aliases may also be shadowed by locals, so they are not checked.
Statements are visited in source order, the order OPA rewrites them in.
"""

from __future__ import annotations

import enum
from typing import Any

from policy_engine import ast
from policy_engine.errors import COMPILE_ERROR, Diagnostic
from policy_engine.source import Span

__all__ = ["check_redeclared"]

_ROOT_DOCUMENTS = ("input", "data")


class _Seen(enum.Enum):
    ASSIGNED = "var {} assigned above"
    DECLARED = "var {} declared above"
    REFERENCED = "var {} referenced above"
    ARG = "arg {} redeclared"


_Scope = dict[str, _Seen]


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Diagnostic] = []

    def rule(self, rule: ast.Rule) -> None:
        if isinstance(rule, ast.DefaultRule):
            return
        args = rule.args if isinstance(rule, ast.FunctionRule) else ()
        bodies: list[tuple[ast.Body, tuple[object, ...]]] = [(rule.body, self._head_terms(rule))]
        for alt in getattr(rule, "elses", ()):
            bodies.append((alt.body, (alt.value,)))
        for body, head in bodies:
            scope: _Scope = {}
            for arg in args:
                self.declare_pattern(arg, scope, _Seen.ARG, report=False)
            self.body(body, scope)
            for term in head:
                self.uses(term, scope)

    @staticmethod
    def _head_terms(rule: ast.Rule) -> tuple[object, ...]:
        if isinstance(rule, ast.PartialSetRule):
            return (rule.element,)
        if isinstance(rule, ast.PartialObjectRule):
            return (rule.key, rule.value)
        if isinstance(rule, ast.GeneralRule):
            return (*rule.keys, rule.value)
        return (getattr(rule, "value", None),)

    def body(self, body: ast.Body, scope: _Scope) -> None:
        for lit in body:
            if lit.negated and isinstance(lit.expr, ast.Assign):
                # OPA rejects it too (open-policy-agent/opa#9069): the name would be
                # declared inside the negation yet visible after it.
                self.problem(
                    "`not` cannot negate an assignment; compare with `==` "
                    "(`not x == 1`), or assign first and negate a test",
                    lit.span,
                )
            self.expr(lit.expr, scope)
            for modifier in lit.withs:
                self.uses(modifier.value, scope)

    def expr(self, expr: ast.Expr, scope: _Scope) -> None:
        if isinstance(expr, ast.Assign):
            # Right side first, as OPA does: in `x := x + 1` the right-hand x is
            # a reference met before the declaration ("var x referenced above").
            self.uses(expr.value, scope)
            self.declare_pattern(expr.target, scope, _Seen.ASSIGNED, report=True)
        elif isinstance(expr, ast.SomeVars):
            for var in expr.names:
                scope.setdefault(var.name, _Seen.DECLARED)
        elif isinstance(expr, ast.SomeIn):
            self.uses(expr.collection, scope)
            for target in (expr.key, expr.value):
                if target is not None:
                    self.declare_pattern(target, scope, _Seen.DECLARED, report=False)
        elif isinstance(expr, ast.Every):
            self.uses(expr.domain, scope)
            inner: _Scope = {}
            for bound in (expr.key, expr.value):
                if bound is not None:
                    inner.setdefault(bound.name, _Seen.DECLARED)
            self.body(expr.body, inner)
        else:
            self.uses(expr, scope)

    def declare_pattern(self, term: ast.Term, scope: _Scope, how: _Seen, *, report: bool) -> None:
        """Declare every variable of a destructuring target; report clashes if asked."""
        if isinstance(term, ast.Var):
            self.declare(term, scope, how, report=report)
        elif isinstance(term, ast.ArrayTerm):
            for item in term.items:
                self.declare_pattern(item, scope, how, report=report)
        elif isinstance(term, ast.ObjectTerm):
            for pair in term.items:
                # Object keys in a pattern are values to match, not new names.
                self.uses(pair.key, scope)
                self.declare_pattern(pair.value, scope, how, report=report)
        else:
            self.uses(term, scope)

    def declare(self, var: ast.Var, scope: _Scope, how: _Seen, *, report: bool) -> None:
        name = var.name
        if name == "_":
            return
        if report and name in _ROOT_DOCUMENTS:
            self.problem(
                f"variables must not shadow {name} (use a different variable name)", var.span
            )
            return
        earlier = scope.get(name)
        if earlier is not None and report:
            self.problem(
                earlier.value.format(name) + "; use `=` to compare with it, or pick a new name",
                var.span,
            )
            return
        scope.setdefault(name, how)

    def uses(self, node: object, scope: _Scope) -> None:
        """Mark every variable read in `node` as met; comprehensions get their own scope."""
        stack: list[Any] = [node]  # iterative, left to right: big policies have many small terms
        pop, push, extend = stack.pop, stack.append, stack.extend
        children = ast.CHILDREN.get
        while stack:
            item = pop()
            kind = type(item)
            if kind is ast.Var:
                if item.name != "_":
                    scope.setdefault(item.name, _Seen.REFERENCED)
            elif kind is tuple:
                extend(reversed(item))
            elif kind is ast.ArrayCompr or kind is ast.SetCompr:
                inner: _Scope = {}
                self.body(item.body, inner)
                self.uses(item.term, inner)
            elif kind is ast.ObjectCompr:
                inner = {}
                self.body(item.body, inner)
                self.uses(item.key, inner)
                self.uses(item.value, inner)
            else:
                plan = children(kind)  # None for None; no getter for a leaf
                if plan is not None and plan[1] is not None:
                    if plan[0]:
                        push(plan[1](item))
                    else:
                        extend(plan[1](item))

    def problem(self, message: str, span: Span | None) -> None:
        self.problems.append(Diagnostic.at(COMPILE_ERROR, message, span))


def check_redeclared(modules: list[ast.Module]) -> list[Diagnostic]:
    """One `rego_compile_error` per `:=` that reuses a name already met in its scope."""
    checker = _Checker()
    for module in modules:
        for rule in module.rules:
            checker.rule(rule)
    return checker.problems
