"""LALR reductions straight to AST nodes (used only by `parser.py`).

lark's usual pipeline builds a parse tree (a `Tree` and a position record per
rule, positions propagated by a generic wrapper on every reduction) and then
walks it again with a transformer. On a 1,000-rule policy that was about half
of the parse. Here each grammar rule gets one callback that does in a single
step what that pipeline does: it takes the position of the rule's text from
its first and last child (tokens the grammar filters out, such as a closing
`}`, included), drops the filtered tokens, inlines helper rules and `?rule`s
with one child, inserts `None` for absent `[optional]` parts, and calls the
`ToAst` method named after the rule with the position and the children.

Results travel up the parser's value stack as `_Node`s (value plus the extent
of the text it came from), which is also what a `ToAst` method receives as
its `meta`. The reductions, ids of parenthesised terms and positions are all
per parse, so concurrent parses share nothing but the immutable tables.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from lark import Lark, Token
from lark.lexer import LexerThread
from lark.parsers.lalr_parser import _Parser

from policy_engine.parse_tree import ToAst

__all__ = ["parse_to_ast"]

Reduction = Callable[[list[Any]], Any]


class _Node:
    """A reduction's result and the extent of its text (a `ToAst` method's `meta`)."""

    __slots__ = ("column", "empty", "end_column", "end_line", "line", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.empty = True
        self.line = self.column = self.end_line = self.end_column = 0


class _Plan(NamedTuple):
    """What one grammar rule's reduction does, worked out once per grammar."""

    method: str | None  # the ToAst method; None for helper rules and one-child `?rule`s
    include: tuple[tuple[int, bool, int], ...]  # (child index, inline it, Nones before it)
    trailing_nones: int
    inline_single: bool  # a `?rule`: one child is the result itself
    helper: bool  # `_rule` / lark's `__x_star_n`: the children join the parent's
    size: int  # how many children the parser hands over


def _locate(node: _Node, children: Sequence[Any]) -> None:
    """The extent of the rule's text: from its first child's start to its last's end."""
    for child in children:
        if type(child) is _Node:
            if not child.empty:
                node.line, node.column = child.line, child.column
                break
        elif isinstance(child, Token):
            node.line, node.column = child.line or 1, child.column or 1
            break
    else:
        return
    for child in reversed(children):
        if type(child) is _Node:
            if not child.empty:
                node.end_line, node.end_column = child.end_line, child.end_column
                break
        elif isinstance(child, Token):
            node.end_line, node.end_column = child.end_line or 0, child.end_column or 0
            break
    node.empty = False


def _reduction(plan: _Plan, builder: ToAst) -> Reduction:
    one = plan.size == 1 and plan.include == ((0, False, 0),) and not plan.trailing_nones
    if plan.inline_single and one:
        # `?postfix: primary` and the like: the one child is the result, its extent
        # the rule's. Nearly half of all reductions; no Python frame for them.
        return operator.itemgetter(0)
    include, trailing = plan.include, plan.trailing_nones
    method = getattr(builder, plan.method) if plan.method is not None else None
    helper, inline_single = plan.helper, plan.inline_single

    def reduce(children: list[Any]) -> Any:
        node = _Node()
        _locate(node, children)
        items: list[Any] = []
        for index, inline, nones in include:
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
            if type(only) is _Node and not node.empty:
                # Its own position made its AST node already; what its parent sees
                # is the text of this rule, which may include filtered tokens.
                only.line, only.column = node.line, node.column
                only.end_line, only.end_column = node.end_line, node.end_column
            return only
        if method is None:
            raise AssertionError(f"grammar rule without a ToAst method: {plan}")
        node.value = method(node, [c.value if type(c) is _Node else c for c in items])
        return node

    return reduce


@functools.cache
def _plans(lark: Lark) -> tuple[tuple[Any, _Plan], ...]:
    """(rule, plan) for every rule of the grammar, as lark's tree builder would treat it."""
    plans = []
    for rule in lark.rules:
        options = rule.options
        name = rule.alias or options.template_source or rule.origin.name
        empty = options.empty_indices  # where `[optional]` parts may be absent
        if empty:
            marks = "".join(str(int(b)) for b in empty)
            nones = [len(ones) for ones in marks.split("0")]
        else:
            nones = [0] * (len(rule.expansion) + 1)
        include: list[tuple[int, bool, int]] = []
        pending = 0
        for index, symbol in enumerate(rule.expansion):
            pending += nones[index]
            filtered = symbol.is_term and getattr(symbol, "filter_out", False)
            if options.keep_all_tokens or not filtered:
                inline = not symbol.is_term and symbol.name.startswith("_")
                include.append((index, inline, pending))
                pending = 0
        helper = str(rule.origin.name).startswith("_")
        inline_single = bool(options.expand1) and not rule.alias
        method = None if helper or not hasattr(ToAst, str(name)) else str(name)
        plan = _Plan(
            method, tuple(include), pending + nones[-1], inline_single, helper, len(rule.expansion)
        )
        plans.append((rule, plan))
    return tuple(plans)


def parse_to_ast(lark: Lark, text: str, file: str, start: str) -> Any:
    """Parse `text` from `start` with `lark`'s tables and lexer, building AST nodes directly.

    Raises lark's `UnexpectedInput` errors and `SyntaxProblem` as they occur.
    """
    builder = ToAst(file)
    callbacks = {rule: _reduction(plan, builder) for rule, plan in _plans(lark)}
    # lark's own `Lark.parse`, less the tree builder: the same lexer (with the
    # postlexer) and parse table, our reductions. `lark` is pinned in pyproject.toml.
    frontend = lark.parser
    lexer_thread = LexerThread.from_text(frontend.lexer, text)
    result = _Parser(frontend.parser._parse_table, callbacks).parse(lexer_thread, start)
    return result.value if type(result) is _Node else result
