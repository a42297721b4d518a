"""Rego text -> AST (`parse_module`, `parse_query`).

A text is parsed by `parse_fast` (lark's LALR tables, exported ahead of time,
run without lark). A text that does not parse is parsed again by lark itself,
built once per process (LALR tables cached on disk by lark), and lark's error
becomes a `PolicyError` with code `rego_parse_error` and lark's position; so a
well-formed policy never imports lark. lark never leaves the parser modules
(`parse_layout`, `parse_build`, `parse_tree`): reductions build
`policy_engine.ast` nodes directly.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import TYPE_CHECKING, Any

from policy_engine import ast
from policy_engine.errors import PARSE_ERROR, Diagnostic, PolicyError
from policy_engine.parse_fast import NotParsed, parse_fast
from policy_engine.parse_layout import Postlexer
from policy_engine.parse_token import Token
from policy_engine.parse_tree import SyntaxProblem
from policy_engine.source import line_start, source_lines

if TYPE_CHECKING:
    from lark import Lark
    from lark.exceptions import UnexpectedToken

__all__ = ["lark_parser", "parse_module", "parse_query"]


@functools.cache
def lark_parser() -> Lark:
    """lark's parser of the grammar: for syntax errors, and to export `parse_tables.json`."""
    # Imported here: a policy that parses never needs lark (see the module doc).
    from lark import Lark

    # Built once per process; lark caches the LALR tables in the temp dir so a
    # fresh process skips the ~100 ms table construction.
    return Lark.open(
        "grammar.lark",
        rel_to=__file__,
        parser="lalr",
        lexer="contextual",
        # Positions are taken by the reductions themselves (`parse_build`).
        propagate_positions=False,
        maybe_placeholders=True,
        start=["module", "query"],
        postlex=Postlexer(),
        cache=True,
    )


# ---- errors ----------------------------------------------------------------------------

_TOKEN_WORDS = {
    "LBODY": "`{`", "RBRACE": "`}`", "LBRACE": "`{`", "LSQB": "`[`", "RSQB": "`]`",
    "LPAR": "`(`", "RPAR": "`)`", "_SEP": "a new line", "$END": "the end of the text",
}  # fmt: skip


def _describe(tok: Token) -> str:
    if tok.type in _TOKEN_WORDS:
        return _TOKEN_WORDS[tok.type]
    return f"`{tok.value}`"


_LOGIC_HINTS = {
    "and": "Rego has no `and`: put each condition on its own line (or after `;`); "
    "all of a body's statements must hold",
    "or": "Rego has no `or`: write one rule per alternative (rules with the same name "
    "are OR-ed), or test membership with `in`",
}


def _previous_char(text: str, exc: UnexpectedToken) -> str:
    """The character just before the unexpected token (for `&&` / `||`)."""
    position = (exc.token.start_pos or 0) - 1
    return text[position] if 0 <= position < len(text) else ""


def _friendly(exc: UnexpectedToken, text: str) -> str:
    tok = exc.token
    expected = set(exc.expected)
    if tok.type == "$END":
        return "unexpected end of text: is a closing `}`, `]` or `)` missing?"
    if tok.type == "LBODY" and "IF" in expected:
        return "rule bodies start with `if`: write `p if { … }`"
    if tok.type in ("NAME", "STRING", "NUMBER", "RAW_STRING") and "COMMA" in expected:
        return f"unexpected {_describe(tok)}: is a `,` missing?"
    if tok.type == "NAME" and tok.value in ("and", "or"):
        return _LOGIC_HINTS[str(tok.value)]
    prev = _previous_char(text, exc)
    if tok.type == "AMP" and prev == "&":
        return _LOGIC_HINTS["and"]
    if tok.type == "BAR" and prev == "|":
        return _LOGIC_HINTS["or"]
    if tok.type == "EQUAL":
        return "unexpected `=`: use `==` to compare, `:=` to assign, `=` alone to unify"
    if tok.type in ("IF", "CONTAINS", "ELSE", "DEFAULT", "IMPORT", "PACKAGE", "SOME", "EVERY"):
        return f"unexpected keyword {_describe(tok)} here"
    if "PACKAGE" in expected:
        return "a policy must start with `package <name>`"
    return f"unexpected {_describe(tok)}"


def _diagnostic(exc: Exception, file: str, text: str) -> Diagnostic:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, SyntaxProblem):
        return Diagnostic(
            code=PARSE_ERROR, message=exc.message, file=file, line=exc.line, column=exc.column
        )
    if isinstance(exc, UnexpectedToken):
        line, column = exc.token.line or exc.line, exc.token.column or exc.column
        if exc.token.type == "$END":
            line, column = _end_position(text)
        return Diagnostic(
            code=PARSE_ERROR, message=_friendly(exc, text), file=file, line=line, column=column
        )
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if 0 <= pos < len(text) else "?"
        message = f"unexpected character `{char}`"
        if char == '"':
            message = 'unterminated string: close it with `"` on the same line'
        elif char == "`":
            message = "unterminated raw string: close it with a back-quote"
        return Diagnostic(
            code=PARSE_ERROR, message=message, file=file, line=exc.line, column=exc.column
        )
    if isinstance(exc, UnexpectedEOF):
        line, column = _end_position(text)
        return Diagnostic(
            code=PARSE_ERROR,
            message="unexpected end of text: is a closing `}`, `]` or `)` missing?",
            file=file,
            line=line,
            column=column,
        )
    return Diagnostic(code=PARSE_ERROR, message="invalid syntax", file=file, line=1, column=1)


def _end_position(text: str) -> tuple[int, int]:
    lines = source_lines(text)
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # the end of a text ending in a line break is shown on its last line
    return len(lines), len(lines[-1]) + 1


class _Failed(Exception):
    """The text does not parse: `cause` is lark's exception or a `SyntaxProblem`."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _parse(text: str, file: str, start: str) -> Any:
    """The AST of `text` from `start`; raises `_Failed` with what lark's parser reports."""
    try:
        return parse_fast(text, file, start)
    except (NotParsed, SyntaxProblem, RecursionError):
        pass  # lark's parser finds the same problem and says where
    from lark.exceptions import LarkError

    from policy_engine.parse_build import parse_to_ast

    try:
        return parse_to_ast(lark_parser(), text, file, start)
    except RecursionError:
        raise _Failed(
            SyntaxProblem(
                "expressions nest too deeply; split them into separate rules or variables", 1, 1
            )
        ) from None
    except (LarkError, SyntaxProblem) as exc:
        raise _Failed(exc) from None


_RULE_START = re.compile(r"^[A-Za-z_]", re.MULTILINE)


def _chunk_diagnostics(text: str, file: str, first_offset: int) -> list[Diagnostic]:
    """Parse each top-level rule on its own to report every broken rule, not just the first.

    Text before a chunk is replaced by blank lines so positions stay right.
    """
    starts = [m.start() for m in _RULE_START.finditer(text)] + [len(text)]
    found: list[Diagnostic] = []
    header = "package __chunk__ "
    for begin, end in itertools.pairwise(starts):
        if begin <= first_offset:
            continue  # the whole-text parse already reported this part
        chunk = text[begin:end]
        if chunk.startswith("package"):
            prefix = "\n" * text.count("\n", 0, begin)
            candidate = prefix + chunk
        else:
            prefix = "\n" * text.count("\n", 0, begin)
            candidate = header + prefix + chunk
        try:
            _parse(candidate, file, "module")
        except _Failed as failed:
            found.append(_diagnostic(failed.cause, file, candidate))
    return found


def _offset(text: str, line: int, column: int) -> int:
    return line_start(text, max(line, 1)) + max(column - 1, 0)


def parse_module(text: str, file: str = "<policy>") -> ast.Module:
    """Parse one policy module; raises `PolicyError` listing every syntax problem."""
    try:
        module: ast.Module = _parse(text, file, "module")
        return module
    except _Failed as failed:
        first = _diagnostic(failed.cause, file, text)
    others = [
        d
        for d in _chunk_diagnostics(text, file, _offset(text, first.line, first.column))
        if (d.line, d.column) != (first.line, first.column)
    ]
    unique = {(d.line, d.column, d.message): d for d in [first, *others]}
    raise PolicyError(unique.values(), {file: text})


def parse_query(text: str, file: str = "<query>") -> tuple[ast.Literal, ...]:
    """Parse a query (one or more literals separated by `;` or new lines)."""
    if not text.strip():
        raise PolicyError(
            [
                Diagnostic(
                    code=PARSE_ERROR, message="the query is empty", file=file, line=1, column=1
                )
            ],
            {file: text},
        )
    if text.lstrip().startswith("package"):
        raise PolicyError(
            [
                Diagnostic(
                    code=PARSE_ERROR,
                    message="a query cannot declare a package",
                    file=file,
                    line=1,
                    column=1,
                )
            ],
            {file: text},
        )
    try:
        body: tuple[ast.Literal, ...] = _parse(text, file, "query")
        return body
    except _Failed as failed:
        raise PolicyError([_diagnostic(failed.cause, file, text)], {file: text}) from None
