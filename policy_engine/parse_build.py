"""lark's parser with the AST-building reductions of `parse_reduce` (used only by `parser.py`).

The engine parses with `parse_fast` (the same LALR tables, exported from lark
by `parse_tables`); this path runs lark's own lexer and parser, and is what
reports a syntax error, exactly as lark finds it.
"""

from __future__ import annotations

import functools
from typing import Any

from lark import Lark
from lark.lexer import LexerThread
from lark.parsers.lalr_parser import _Parser

from policy_engine.parse_reduce import Node, Plan, reduction
from policy_engine.parse_tree import ToAst

__all__ = ["parse_to_ast", "plans"]


class _Reductions(dict[Any, Any]):
    """lark's callbacks for one parse: each rule's reduction, made on its first use."""

    def __init__(self, rule_plans: dict[Any, Plan], builder: ToAst) -> None:
        super().__init__()
        self._plans = rule_plans
        self._builder = builder

    def __bool__(self) -> bool:
        return True  # lark reduces with the callbacks only when there are any

    def __missing__(self, rule: Any) -> Any:
        made = self[rule] = reduction(self._plans[rule], self._builder)
        return made


@functools.cache
def plans(lark: Lark) -> tuple[tuple[Any, Plan], ...]:
    """(rule, plan) for every rule of the grammar, as lark's tree builder would treat it."""
    found = []
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
        plan = Plan(
            method, tuple(include), pending + nones[-1], inline_single, helper, len(rule.expansion)
        )
        found.append((rule, plan))
    return tuple(found)


def parse_to_ast(lark: Lark, text: str, file: str, start: str) -> Any:
    """Parse `text` from `start` with `lark`'s tables and lexer, building AST nodes directly.

    Raises lark's `UnexpectedInput` errors and `SyntaxProblem` as they occur.
    """
    callbacks = _Reductions(dict(plans(lark)), ToAst(file))
    # lark's own `Lark.parse`, less the tree builder: the same lexer (with the
    # postlexer) and parse table, our reductions. `lark` is pinned in pyproject.toml.
    frontend = lark.parser
    lexer_thread = LexerThread.from_text(frontend.lexer, text)
    result = _Parser(frontend.parser._parse_table, callbacks).parse(lexer_thread, start)
    return result.value if type(result) is Node else result
