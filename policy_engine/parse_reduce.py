"""One LALR reduction per grammar rule, straight to an AST node (used only by the parser modules).

lark's usual pipeline builds a parse tree (a `Tree` and a position record per
rule, positions propagated by a generic wrapper on every reduction) and then
walks it again with a transformer. On a 1,000-rule policy that was about half
of the parse. Here each grammar rule gets one callback that does in a single
step what that pipeline does: it takes the position of the rule's text from
its first and last child (tokens the grammar filters out, such as a closing
`}`, included), drops the filtered tokens, inlines helper rules and `?rule`s
with one child, inserts `None` for absent `[optional]` parts, and calls the
`ToAst` method named after the rule with the position and the children.

Results travel up the parser's value stack as `Node`s (value plus the extent
of the text it came from), which is also what a `ToAst` method receives as
its `meta`. The reductions, ids of parenthesised terms and positions are all
per parse, so concurrent parses share nothing but the immutable tables.

Both parsers use these reductions: the table-driven `parse_fast` and lark's
(`parse_build`, which works out each rule's `Plan` from lark's grammar).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

from policy_engine.parse_tree import ToAst

__all__ = ["Node", "Plan", "Reduction", "is_unit", "reduction"]

Reduction = Callable[[list[Any]], Any]


class Node:
    """A reduction's result and the extent of its text (a `ToAst` method's `meta`)."""

    __slots__ = ("column", "empty", "end_column", "end_line", "line", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.empty = True
        self.line = self.column = self.end_line = self.end_column = 0


class Plan(NamedTuple):
    """What one grammar rule's reduction does, worked out once per grammar."""

    method: str | None  # the ToAst method; None for helper rules and one-child `?rule`s
    include: tuple[tuple[int, bool, int], ...]  # (child index, inline it, Nones before it)
    trailing_nones: int
    inline_single: bool  # a `?rule`: one child is the result itself
    helper: bool  # `_rule` / lark's `__x_star_n`: the children join the parent's
    size: int  # how many children the parser hands over


def is_unit(plan: Plan) -> bool:
    """A `?rule` reduction of one child, which is the result itself (`?postfix: primary`...)."""
    return (
        plan.inline_single
        and plan.size == 1
        and plan.include == ((0, False, 0),)
        and not plan.trailing_nones
    )


@functools.cache
def _shape(plan: Plan) -> tuple[bool, bool, tuple[tuple[int, bool, int], ...]]:
    """(as given, grows, the other parts): how a reduction builds its items, per grammar."""
    include = plan.include
    # The children as they come (no filtered tokens, nothing inlined, no `None`s
    # for absent optionals): the parser's fresh list is the items list.
    as_given = include == tuple((i, False, 0) for i in range(plan.size)) and not plan.trailing_nones
    # A helper rule's list grows leftmost (`__x_star: __x_star item`): the child's
    # list, which no one else holds, is extended in place rather than copied.
    grows = bool(include) and include[0] == (0, True, 0)
    return as_given, grows, include[1:] if grows else include


def reduction(plan: Plan, builder: ToAst) -> Reduction:
    if is_unit(plan):
        # The one child is the result, its extent the rule's. Nearly half of all
        # reductions; no Python frame for them.
        return operator.itemgetter(0)
    trailing = plan.trailing_nones
    method = getattr(builder, plan.method) if plan.method is not None else None
    helper, inline_single = plan.helper, plan.inline_single
    as_given, grows, rest = _shape(plan)
    new_node = object.__new__  # a Node without a call to its __init__

    def reduce(children: list[Any]) -> Any:
        # The extent of the rule's text: from its first child's start to its last's
        # end (tokens and `Node`s both say whether they are `empty`).
        node = new_node(Node)  # every field set below or before it is returned
        for child in children:
            if not child.empty:
                node.line, node.column = child.line, child.column
                for last in reversed(children):
                    if not last.empty:
                        node.end_line, node.end_column = last.end_line, last.end_column
                        break
                node.empty = False
                break
        else:
            node.empty = True
            node.line = node.column = node.end_line = node.end_column = 0
        if as_given:
            items = children
        else:
            items = children[0].value if grows else []
            for index, inline, nones in rest:
                if nones:
                    items += [None] * nones
                if inline:
                    items += children[index].value
                else:
                    items.append(children[index])
            if trailing:
                items += [None] * trailing
        if helper:
            node.value = items
            return node
        if inline_single and len(items) == 1:
            only = items[0]
            if type(only) is Node and not node.empty:
                # Its own position made its AST node already; what its parent sees
                # is the text of this rule, which may include filtered tokens.
                only.line, only.column = node.line, node.column
                only.end_line, only.end_column = node.end_line, node.end_column
            return only
        if method is None:
            raise AssertionError(f"grammar rule without a ToAst method: {plan}")
        node.value = method(node, [c.value if type(c) is Node else c for c in items])
        return node

    return reduce
