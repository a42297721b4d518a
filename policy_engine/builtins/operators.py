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
    builtin(
        "plus",
        _numeric("plus", add),
        "(x: number, y: number) -> number",
        "plus(1, 2)",
        doc="Adds two numbers (the `+` operator).",
    ),
    builtin(
        "minus",
        minus,
        "(x: number | set[any], y: number | set[any]) -> number | set[any]",
        "minus({1, 2}, {2})",
    ),
    builtin(
        "mul",
        _numeric("mul", multiply),
        "(x: number, y: number) -> number",
        "mul(2, 3)",
        doc="Multiplies two numbers (the `*` operator).",
    ),
    builtin(
        "div",
        _numeric("div", divide),
        "(x: number, y: number) -> number",
        "div(7, 2)",
        doc="Divides the first number by the second (the `/` operator).",
    ),
    builtin(
        "rem",
        _numeric("rem", remainder),
        "(x: number, y: number) -> number",
        "rem(7, 2)",
        doc="The remainder of integer division (the `%` operator).",
    ),
    builtin(
        "and",
        intersect,
        "(x: set[any], y: set[any]) -> set[any]",
        "and({1, 2}, {2, 3})",
        doc="The intersection of two sets (the `&` operator).",
    ),
    builtin(
        "or",
        unite,
        "(x: set[any], y: set[any]) -> set[any]",
        "or({1}, {2})",
        doc="The union of two sets (the `|` operator).",
    ),
    builtin(
        "lt",
        lt,
        "(x: any, y: any) -> boolean",
        "lt(1, 2)",
        doc="Whether x is less than y (the `<` operator).",
    ),
    builtin(
        "lte",
        lte,
        "(x: any, y: any) -> boolean",
        "lte(2, 2)",
        doc="Whether x is less than or equal to y (the `<=` operator).",
    ),
    builtin(
        "gt",
        gt,
        "(x: any, y: any) -> boolean",
        "gt(2, 1)",
        doc="Whether x is greater than y (the `>` operator).",
    ),
    builtin(
        "gte",
        gte,
        "(x: any, y: any) -> boolean",
        "gte(2, 2)",
        doc="Whether x is greater than or equal to y (the `>=` operator).",
    ),
    builtin("equal", equal, "(x: any, y: any) -> boolean", "equal(1, 1.0)"),
    builtin(
        "neq",
        not_equal,
        "(x: any, y: any) -> boolean",
        "neq(1, 2)",
        doc="Whether two values differ (the `!=` operator).",
    ),
)
