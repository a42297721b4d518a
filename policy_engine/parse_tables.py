"""Export lark's LALR tables and contextual lexers for `parse_fast` (a build step, not run at load).

`python -m policy_engine.parse_tables` rewrites `parse_tables.json` from
`grammar.lark`; `tests/engine/test_parse_tables.py` checks that the shipped file
is what this produces, so the two cannot drift. The export is exact: per parser
state the action on each symbol and the lexer lark would use there (its
terminals' alternation in lark's order, the keywords it retypes), per grammar
rule the `Plan` of its reduction (`parse_build.plans`).

Each state's lexer tries, in the same order, a subset of the terminals of
lark's root lexer (all terminals). So where the root lexer's first matching
terminal is one the state accepts, the state's lexer matches that terminal and
the same text: `parse_fast` runs the one root alternation and compiles a
state's own only for a token the state does not accept. `export` checks that
order.

The states are numbered in a canonical order (`_canonical_order`), not lark's:
lark numbers them as it meets them in sets ordered by string hashes, so its
numbering depends on the hash seed of the process that first built the tables
(and cached them in the temp directory), and a fresh machine would export a
different, equivalent file.

Between tokens, `parse_fast` skips ignored text (spaces, comments) with one
pattern, the ignored terminals' alternation repeated, then matches the token;
lark matches each ignored stretch as a token of its own. That is the same
wherever the lexer, at a character an ignored terminal can start with, picks
that terminal whatever follows: `_skippable` checks it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lark.lexer import BasicLexer, PatternStr, UnlessCallback
from lark.parsers.lalr_analysis import Shift

from policy_engine.parse_build import plans
from policy_engine.parser import lark_parser

__all__ = ["TABLES_PATH", "export", "main", "render"]

TABLES_PATH = Path(__file__).with_name("parse_tables.json")


def _alternation(lexer: BasicLexer) -> list[tuple[str, str]]:
    """(terminal, regexp) in the order the lexer tries them."""
    scanner = lexer.scanner
    if len(scanner._mres) != 1 or lexer.g_regex_flags:
        raise AssertionError("a lexer that is not one plain alternation")
    return [(t.name, t.pattern.to_regexp()) for t in scanner.terminals]


def _lexer(lexer: BasicLexer, root: list[tuple[str, str]]) -> dict[str, Any]:
    scanner = lexer.scanner
    own = _alternation(lexer)
    if own != [entry for entry in root if entry in own]:
        raise AssertionError("a state's lexer does not try the root lexer's terminals in order")
    keywords: dict[str, dict[str, str]] = {}
    for type_, callback in lexer.callback.items():
        if not isinstance(callback, UnlessCallback):
            raise AssertionError(f"lexer callback on {type_} is not lark's keyword retyping")
        words: dict[str, str] = {}
        for terminal in callback.scanner.terminals:
            pattern = terminal.pattern
            if not isinstance(pattern, PatternStr) or pattern.flags:
                raise AssertionError(f"keyword {terminal.name} is not a plain string")
            words.setdefault(pattern.value, terminal.name)  # lark's alternation: first wins
        keywords[type_] = dict(sorted(words.items()))
    return {
        "pattern": scanner._mres[0].pattern,
        "accepts": sorted(name for name, _regexp in own),
        "keywords": dict(sorted(keywords.items())),
    }


# Texts after an ignored terminal's first character, to try every terminal ahead of it on.
_SAMPLE_TAILS = ("", " ", "\t", "\n", "#", "a", "Z", "_", "0", "9", '"', "`", "{", "-", "=", "x y")


def _skippable(root: BasicLexer, order: list[tuple[str, str]]) -> str:
    """The pattern of a stretch of ignored text; raises if lark would lex it otherwise."""
    ignored = [(name, regexp) for name, regexp in order if name in root.ignore_types]
    match = root.scanner._mres[0].match
    for name, regexp in ignored:
        compiled = re.compile(regexp)
        starts = [chr(c) for c in range(0x3000) if compiled.match(chr(c))]
        for first in starts:
            for tail in _SAMPLE_TAILS:
                found = match(first + tail)
                if found is None or found.lastgroup != name:
                    raise AssertionError(f"{first + tail!r} does not lex as {name}")
    return "(?:" + "|".join(regexp for _name, regexp in ignored) + ")*"


def _canonical_order(start_states: dict[str, int], shifts_of: list[list[int]]) -> list[int]:
    """lark's state numbers in breadth-first order from the start states (by start
    name), each state's shift targets taken in its symbols' order: a numbering that
    depends only on the automaton."""
    order: list[int] = []
    seen: set[int] = set()
    queue = [state for _name, state in sorted(start_states.items())]
    while queue:
        following: list[int] = []
        for state in queue:
            if state in seen:
                continue
            seen.add(state)
            order.append(state)
            following.extend(shifts_of[state])
        queue = following
    # States no start reaches (lark makes none) keep lark's relative order, at the end.
    order.extend(state for state in range(len(shifts_of)) if state not in seen)
    return order


def export() -> dict[str, Any]:
    """The tables of the engine's grammar, as `parse_tables.json` holds them."""
    lark = lark_parser()
    frontend = lark.parser
    table = frontend.parser._parse_table
    contextual = frontend.lexer.lexer
    rule_plans = plans(lark)
    rule_index = {rule: i for i, (rule, _plan) in enumerate(rule_plans)}
    if len(rule_index) != len(rule_plans):
        raise AssertionError("two grammar rules compare equal")
    root = contextual.root_lexer
    root_order = _alternation(root)
    state_items = [sorted(table.states[state].items()) for state in range(len(table.states))]
    order = _canonical_order(
        table.start_states,
        [[arg for _symbol, (action, arg) in items if action is Shift] for items in state_items],
    )
    number = {state: index for index, state in enumerate(order)}
    lexer_index: dict[int, int] = {}
    lexers: list[dict[str, Any]] = []
    actions: list[dict[str, int]] = []
    lexer_of_state: list[int] = []
    for state in order:
        # Shift to state s is s; reduce by rule r is -1 - r.
        actions.append(
            {
                symbol: number[arg] if action is Shift else -1 - rule_index[arg]
                for symbol, (action, arg) in state_items[state]
            }
        )
        lexer = contextual.lexers[state]
        if id(lexer) not in lexer_index:
            lexer_index[id(lexer)] = len(lexers)
            lexers.append(_lexer(lexer, root_order))
            if lexer.ignore_types != root.ignore_types:
                raise AssertionError("a state's lexer ignores other terminals")
        lexer_of_state.append(lexer_index[id(lexer)])
    rules = [
        [rule.origin.name, plan.method, [list(i) for i in plan.include], plan.trailing_nones,
         plan.inline_single, plan.helper, plan.size]
        for rule, plan in rule_plans
    ]  # fmt: skip
    return {
        "lark": __import__("lark").__version__,
        "start": {name: number[state] for name, state in sorted(table.start_states.items())},
        "end": {name: number[state] for name, state in sorted(table.end_states.items())},
        "actions": actions,
        "root_pattern": root.scanner._mres[0].pattern,
        "skip_pattern": _skippable(root, root_order),
        "ignore": sorted(root.ignore_types),
        "newline": sorted(root.newline_types),
        "lexer_of_state": lexer_of_state,
        "lexers": lexers,
        "rules": rules,
    }


def render() -> str:
    """`export()` as the text of `parse_tables.json`."""
    return json.dumps(export(), separators=(",", ":")) + "\n"


def main() -> None:
    """Rewrite `parse_tables.json` (after a change to `grammar.lark`)."""
    TABLES_PATH.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
