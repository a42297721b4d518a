"""The building blocks compiled policies are made of (see `compile.py`).

A statement compiles to a builder, `Step -> Step`, so each closure knows the
statement after it. `Stmt` marks statements with at most one solution, which
also run straight-line (`direct`); `IterStmt` is iteration, into which `chain`
fuses the deterministic statements that follow it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from policy_engine import ast
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
    iterate,
)
from policy_engine.values import UNDEFINED, FrozenDict, freeze, normalize_number

__all__ = [
    "NOOP",
    "OPERATORS",
    "Builder",
    "ClauseFn",
    "Direct",
    "FuncFn",
    "IterStmt",
    "Matcher",
    "RuleFn",
    "Stmt",
    "always",
    "chain",
    "conjunction",
    "constant",
    "direct_body",
    "final_step",
    "go_on",
    "iter_match_step",
    "iter_step",
    "match_step",
    "never",
    "number_value",
    "sequence",
    "stop",
    "truthy_step",
]

Builder = Callable[[Step], Step]
Direct = Callable[[Ctx, Frame], bool]
ClauseFn = Callable[[Ctx, Frame], Any]
Matcher = Callable[[Ctx, Frame, Any], bool]
RuleFn = Callable[..., Any]
"""`evaluate(ctx)`; rule and namespace evaluators also accept a frame, so they
can stand where a `ValueFn` is expected."""
FuncFn = Callable[[Ctx, tuple[Any, ...]], Any]

OPERATORS = {
    "+": "plus", "-": "minus", "*": "mul", "/": "div", "%": "rem", "&": "and", "|": "or",
    "<": "lt", "<=": "lte", ">": "gt", ">=": "gte",
}  # fmt: skip


def final_step(ctx: Ctx, f: Frame, k: Cont) -> bool:
    return k(ctx, f)


def stop(ctx: Ctx, f: Frame) -> bool:
    return True


def go_on(ctx: Ctx, f: Frame) -> bool:
    return False


def chain(builders: list[Builder], last: Step = final_step) -> Step:
    units: list[tuple[Builder, list[Direct]]] = []
    for build in builders:
        if isinstance(build, Stmt) and units and isinstance(units[-1][0], IterStmt):
            if build is not NOOP:
                units[-1][1].append(build.direct)
        else:
            units.append((build, []))
    step = last
    for build, filters in reversed(units):
        if filters and isinstance(build, IterStmt):
            step = build.filtered(step, sequence(filters))
        else:
            step = build(step)
    return step


def number_value(text: str) -> int | Decimal:
    if text.lstrip("-").isdigit():
        return int(text)
    return normalize_number(Decimal(text))


_SCALAR_VALUE = (ast.StringLit, ast.BoolLit)


def constant(term: ast.Term) -> Any:
    """The value of a term made only of literals, or MISSING."""
    # By exact class (AST classes have no subclasses): the compiler asks this of
    # nearly every term it meets, most of which are not constants.
    kind = type(term)
    node: Any = term
    if kind in _SCALAR_VALUE:
        return node.value
    if kind is ast.NumberLit:
        return number_value(node.text)
    if kind is ast.NullLit:
        return None
    if kind is ast.ArrayTerm:
        items = [constant(t) for t in node.items]
        return MISSING if any(i is MISSING for i in items) else tuple(items)
    if kind is ast.SetTerm:
        items = [constant(t) for t in node.items]
        return MISSING if any(i is MISSING for i in items) else frozenset(map(freeze, items))
    if kind is ast.ObjectTerm:
        pairs = [(constant(i.key), constant(i.value)) for i in node.items]
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


def always(ctx: Ctx, f: Frame) -> bool:
    return True


def never(ctx: Ctx, f: Frame) -> bool:
    return False


NOOP = Stmt(always)


def truthy_step(fn: ValueFn) -> Stmt:
    def holds(ctx: Ctx, f: Frame) -> bool:
        v = fn(ctx, f)
        return v is not UNDEFINED and v is not False

    return Stmt(holds)


def match_step(fn: ValueFn, matcher: Matcher) -> Stmt:
    def holds(ctx: Ctx, f: Frame) -> bool:
        v = fn(ctx, f)
        return v is not UNDEFINED and matcher(ctx, f, v)

    return Stmt(holds)


def sequence(directs: list[Direct]) -> Direct:
    """Straight-line conjunction of deterministic statements."""
    if not directs:
        return always
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
    return sequence([b.direct for b in stmts if b is not NOOP])


class IterStmt:
    """Iteration over a collection binding a key slot (0: none) and a value slot.

    `chain` fuses the deterministic statements right after it into the loop as
    a filter, so a `some x in xs; test(x)` pair costs one loop, no extra calls.
    """

    __slots__ = ("coll", "key_slot", "val_slot")

    def __init__(self, coll: ValueFn, key_slot: int, val_slot: int) -> None:
        self.coll = coll
        self.key_slot = key_slot
        self.val_slot = val_slot

    def __call__(self, nxt: Step) -> Step:
        return self.filtered(nxt, always)

    def filtered(self, nxt: Step, keep: Direct) -> Step:
        coll, key_slot, val_slot = self.coll, self.key_slot, self.val_slot

        def step(ctx: Ctx, f: Frame, k: Cont) -> bool:
            items = coll(ctx, f)
            kind = type(items)
            if kind not in COLLECTION_TYPES and (
                kind in NOT_COLLECTIONS or not isinstance(items, COLLECTIONS)
            ):
                return False
            # The whole collection is charged up front: one check per loop, not per item.
            ctx.steps -= len(items)
            if ctx.steps < 0:
                ctx.spend(0)
            if not key_slot and kind is not dict and not isinstance(items, dict):
                # Arrays and sets without a key: the members themselves, no pairs.
                for val in items:
                    f[val_slot] = val
                    if keep(ctx, f) and nxt(ctx, f, k):
                        return True
                return False
            if kind is dict or isinstance(items, dict):
                pairs: Any = items.items()
            elif isinstance(items, ARRAYS):
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


def iter_step(coll: ValueFn, key_slot: int, val_slot: int) -> Builder:
    return IterStmt(coll, key_slot, val_slot)


def iter_match_step(coll: ValueFn, key_matcher: Matcher, val_slot: int) -> Builder:
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


def conjunction(parts: list[Builder]) -> Builder:
    direct = direct_body(parts)
    if direct is not None:
        return Stmt(direct)
    return lambda nxt: chain(parts, nxt)
