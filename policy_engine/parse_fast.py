"""The table-driven parser: lark's LALR tables and lexers without lark (used only by `parser.py`).

lark is the grammar's tool: it builds the tables (`parse_tables.py` exports them
to `parse_tables.json`, checked current by a test) and it reports syntax
errors. Parsing a policy that is well formed needs neither lark nor its
import: this module runs the same automaton over the same tokens — the
contextual lexer (per parser state, lark's alternation of the terminals that
state accepts, keywords retyped as lark does), then the layout rules of
`parse_layout.Postlexer`, then LALR shift/reduce with the `parse_reduce`
reductions — in one loop, without lark's per-token objects and calls.

On any text it cannot parse it raises `NotParsed` without a position, and
`parser.py` runs lark's parser on the text for the exact error. The two cannot
disagree on a text that parses: the tables are lark's, and the test suite
compares both parsers' ASTs on every policy and query of the corpora.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from policy_engine.parse_layout import BODY_OPENERS, KEYWORDS, NO_SEP_AFTER, NO_SEP_BEFORE
from policy_engine.parse_reduce import Node, Plan, Reduction, is_unit, reduction
from policy_engine.parse_token import Token
from policy_engine.parse_tree import ToAst

__all__ = ["NotParsed", "parse_fast"]


class NotParsed(Exception):
    """The text does not parse; lark's parser says where and why."""


Match = Callable[[str, int], "re.Match[str] | None"]


class _Lexer:
    """A parser state's lexer: the terminals it accepts, its own alternation compiled on demand."""

    __slots__ = ("_match", "_pattern", "accepts", "keywords")

    def __init__(self, pattern: str, accepts: list[str], keywords: dict[str, dict[str, str]]):
        self._pattern = pattern
        self._match: Match | None = None
        self.accepts = frozenset(accepts)
        self.keywords = keywords

    def match(self, text: str, pos: int) -> re.Match[str] | None:
        """lark's match in this state, where the root lexer's terminal is not accepted."""
        if self._match is None:
            # Rare (the text would not parse) and ~1 ms a pattern: compiled on first use.
            self._match = re.compile(self._pattern).match
        return self._match(text, pos)


class _Tables(NamedTuple):
    start: dict[str, int]
    end: dict[str, int]
    actions: list[dict[str, int]]  # per state: symbol -> next state, or -1 - rule to reduce
    root_match: Match  # ignored text, then a terminal of all in lark's order (`parse_tables`)
    ignore: frozenset[str]
    newline: frozenset[str]  # terminals that may span lines
    lexers: list[_Lexer]  # per state
    origins: list[str]  # per rule: the nonterminal it reduces to
    plans: list[Plan]  # per rule
    units: list[bool]  # per rule: a `?rule` of one child (`parse_reduce.is_unit`)
    sizes: list[int]  # per rule: how many values it takes


@functools.cache
def _tables() -> _Tables:
    raw = json.loads(Path(__file__).with_name("parse_tables.json").read_text(encoding="utf-8"))
    lexers = [
        _Lexer(lexer["pattern"], lexer["accepts"], lexer["keywords"]) for lexer in raw["lexers"]
    ]
    plans = [
        Plan(method, tuple(tuple(i) for i in include), trailing, single, helper, size)
        for _origin, method, include, trailing, single, helper, size in raw["rules"]
    ]
    return _Tables(
        start=raw["start"],
        end=raw["end"],
        actions=raw["actions"],
        # The root alternation made optional: at a character no terminal starts
        # with, the match ends after the ignored text, with no token group.
        root_match=re.compile(f"{raw['skip_pattern']}(?:{raw['root_pattern']})?").match,
        ignore=frozenset(raw["ignore"]),
        newline=frozenset(raw["newline"]),
        lexers=[lexers[i] for i in raw["lexer_of_state"]],
        origins=[rule[0] for rule in raw["rules"]],
        plans=plans,
        units=[is_unit(plan) for plan in plans],
        sizes=[plan.size for plan in plans],
    )


def parse_fast(text: str, file: str, start: str) -> Any:
    """`text` parsed from `start` ("module" or "query"); raises `NotParsed` or `SyntaxProblem`."""
    tables = _tables()
    builder = ToAst(file)
    plans, units, sizes, origins = tables.plans, tables.units, tables.sizes, tables.origins
    # Each rule's reduction, made on its first use in this parse (a small text uses
    # few of the grammar's rules).
    reductions: list[Reduction | None] = [None] * len(plans)
    actions = tables.actions
    lexers = tables.lexers
    root_match, ignore, newline = tables.root_match, tables.ignore, tables.newline
    skipped_may_span_lines = bool(ignore & newline)
    new_str = str.__new__
    states = [tables.start[start]]
    values: list[Any] = []

    def feed(token: Token | None, type_: str) -> None:
        """lark's `feed_token` for a token that is not the end: reduce as needed, then shift."""
        while True:
            action = actions[states[-1]].get(type_)
            if action is None:
                raise NotParsed
            if action >= 0:
                states.append(action)
                values.append(token)
                return
            rule = -1 - action
            origin = origins[rule]
            if units[rule]:
                # A `?rule` of one child, which is the result: only the state changes.
                states[-1] = actions[states[-2]][origin]
                continue
            reduce = reductions[rule]
            if reduce is None:
                reduce = reductions[rule] = reduction(plans[rule], builder)
            size = sizes[rule]
            if size:
                children = values[-size:]
                del states[-size:]
                del values[-size:]
            else:
                children = []
            value = reduce(children)
            states.append(actions[states[-1]][origin])
            values.append(value)

    # Lexer position (lark's LineCounter) and the postlexer's layout state.
    pos, line, line_start, size = 0, 1, 0, len(text)
    layout: list[str] = []  # "body", "paren", "collection", "compr"
    query_mode: bool | None = None
    prev = ""
    pending: Token | None = None  # a new line that may end a statement, as lark's `_SEP`
    while pos < size:
        # Ignored text (spaces, comments), then the token, in one match.
        match = root_match(text, pos)
        if match is None:  # never: everything in the pattern is optional
            raise NotParsed
        begin = match.start(match.lastindex) if match.lastindex else match.end()
        if begin != pos:
            if skipped_may_span_lines:
                newlines = text.count("\n", pos, begin)
                if newlines:
                    line += newlines
                    line_start = text.rindex("\n", pos, begin) + 1
            pos = begin
            if pos == size:
                break
        # The lexer of the state the parser is in when it asks for the next token.
        lexer = lexers[states[-1]]
        type_ = match.lastgroup
        if type_ is None or type_ not in lexer.accepts:
            own = lexer.match(text, pos)
            if own is None:
                raise NotParsed
            match, type_ = own, own.lastgroup or ""
        value = match.group(type_)
        start_pos, start_line, column = pos, line, pos - line_start + 1
        if type_ in newline:
            newlines = value.count("\n")
            if newlines:
                line += newlines
                line_start = pos + value.rindex("\n") + 1
        pos += len(value)
        if type_ in ignore:
            continue  # only after the state's own lexer: the root's skips them
        keywords = lexer.keywords.get(type_)
        if keywords is not None and value in keywords:
            type_ = keywords[value]
        # parse_layout.Postlexer, token by token.
        if query_mode is None and type_ != "NEWLINE":
            query_mode = type_ != "PACKAGE"
        if type_ == "NEWLINE":
            top = layout[-1] if layout else ("body" if query_mode else "top")
            if top in ("body", "compr") and prev and prev not in NO_SEP_AFTER:
                end_column = pos - line_start + 1
                pending = Token("_SEP", "\n", start_pos, start_line, column, line, end_column, pos)
            continue
        if type_ == "NAME" and value in KEYWORDS and prev != "DOT":
            type_ = KEYWORDS[value]
        if pending is not None:
            if type_ not in NO_SEP_BEFORE and not (type_ == "ADDOP" and value == "-"):
                feed(pending, "_SEP")
                prev = "_SEP"
            pending = None
        if type_ == "LBRACE" and prev in BODY_OPENERS:
            type_ = "LBODY"
        if type_ == "LBODY":
            layout.append("body")
        elif type_ in ("LBRACE", "LSQB"):
            layout.append("collection")
        elif type_ == "LPAR":
            layout.append("paren")
        elif type_ == "BAR" and layout and layout[-1] == "collection":
            layout[-1] = "compr"
        elif type_ in ("RBRACE", "RSQB", "RPAR") and layout:
            layout.pop()
        # Token(...) without its Python-level constructor: one call fewer per token.
        token = new_str(Token, value)
        token.__dict__ = {
            "type": type_,
            "value": value,
            "start_pos": start_pos,
            "line": start_line,
            "column": column,
            "end_line": line,
            "end_column": pos - line_start + 1,
            "end_pos": pos,
        }
        # feed(token, type_), inline: reduce as needed, then shift.
        while True:
            action = actions[states[-1]].get(type_)
            if action is None:
                raise NotParsed
            if action >= 0:
                states.append(action)
                values.append(token)
                break
            rule = -1 - action
            origin = origins[rule]
            if units[rule]:
                states[-1] = actions[states[-2]][origin]
                continue
            reduce = reductions[rule]
            if reduce is None:
                reduce = reductions[rule] = reduction(plans[rule], builder)
            count = sizes[rule]
            if count:
                children = values[-count:]
                del states[-count:]
                del values[-count:]
            else:
                children = []
            values.append(reduce(children))
            states.append(actions[states[-1]][origin])
        prev = type_
    # The end: reduce until the start symbol's end state.
    end_state = tables.end[start]
    while True:
        action = actions[states[-1]].get("$END")
        if action is None or action >= 0:
            raise NotParsed
        rule = -1 - action
        origin = origins[rule]
        if units[rule]:
            states[-1] = actions[states[-2]][origin]
        else:
            reduce = reductions[rule]
            if reduce is None:
                reduce = reductions[rule] = reduction(plans[rule], builder)
            size = sizes[rule]
            if size:
                children = values[-size:]
                del states[-size:]
                del values[-size:]
            else:
                children = []
            value = reduce(children)
            states.append(actions[states[-1]][origin])
            values.append(value)
        if states[-1] == end_state:
            result = values[-1]
            return result.value if type(result) is Node else result
