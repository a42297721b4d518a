"""The built-ins behind Rego's infix operators, under OPA's names.

`+ - * / %` are plus, minus, mul, div, rem; `< <= > >= == !=` are lt, lte, gt,
gte, equal, neq; `&` and `|` are and, or (set intersection and union), and
`-` on two sets is set difference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policy_engine.builtins.arithmetic import add, divide, multiply, remainder, subtract
from policy_engine.builtins.base import (
    Builtin,
    Number,
    builtin,
    operand_error,
    want_number,
    want_set,
)
from policy_engine.values import compare, equal, is_number

__all__ = ["BUILTINS"]


def _numeric(name: str, operation: Callable[[Number, Number], Number]) -> Callable[..., object]:
    def apply(a: object, b: object) -> object:
        return operation(want_number(name, 1, a), want_number(name, 2, b))

    apply.__name__ = name
    return apply


def minus(a: object, b: object) -> object:
    """Number subtraction, or set difference when both operands are sets."""
    if isinstance(a, frozenset):
        return a - want_set("minus", 2, b)
    if is_number(a):
        return subtract(want_number("minus", 1, a), want_number("minus", 2, b))
    raise operand_error("minus", 1, "one of {number, set}", a)


def intersect(a: object, b: object) -> frozenset[Any]:
    return want_set("and", 1, a) & want_set("and", 2, b)


def unite(a: object, b: object) -> frozenset[Any]:
    return want_set("or", 1, a) | want_set("or", 2, b)


def lt(a: object, b: object) -> bool:
    return compare(a, b) < 0


def lte(a: object, b: object) -> bool:
    return compare(a, b) <= 0


def gt(a: object, b: object) -> bool:
    return compare(a, b) > 0


def gte(a: object, b: object) -> bool:
    return compare(a, b) >= 0


def not_equal(a: object, b: object) -> bool:
    return not equal(a, b)


BUILTINS: tuple[Builtin, ...] = (
    builtin("plus", _numeric("plus", add), 2),
    builtin("minus", minus, 2),
    builtin("mul", _numeric("mul", multiply), 2),
    builtin("div", _numeric("div", divide), 2),
    builtin("rem", _numeric("rem", remainder), 2),
    builtin("and", intersect, 2),
    builtin("or", unite, 2),
    builtin("lt", lt, 2),
    builtin("lte", lte, 2),
    builtin("gt", gt, 2),
    builtin("gte", gte, 2),
    builtin("equal", equal, 2),
    builtin("neq", not_equal, 2),
)
