"""Layout for the LALR parser: where a new line ends a statement.

Rego separates statements in a body by new lines, but a new line inside
brackets or after an operator continues the expression. The grammar cannot
say that, so this postlexer turns significant new lines into `_SEP` tokens,
drops the others, and retypes a `{` that opens a rule or `every` body as
`LBODY` (object and set literals keep `LBRACE`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policy_engine.parse_token import Token

__all__ = ["BODY_OPENERS", "KEYWORDS", "NO_SEP_AFTER", "NO_SEP_BEFORE", "Postlexer"]

# Token types after which a newline never ends a statement (the expression or
# statement obviously continues), and before which it never does.
NO_SEP_AFTER = frozenset(
    {
        "LBODY", "LBRACE", "LSQB", "LPAR", "COMMA", "SEMICOLON", "_SEP", "COLON",
        "__ANON_0", "EQUAL", "RELOP", "BAR", "AMP", "ADDOP", "MULOP", "IF", "ELSE",
        "NOT", "SOME", "IN", "EVERY", "WITH", "AS", "CONTAINS", "DOT", "DEFAULT",
    }
)  # fmt: skip
NO_SEP_BEFORE = frozenset(
    {"RBRACE", "RSQB", "RPAR", "COMMA", "COLON", "SEMICOLON", "WITH", "RELOP", "AMP",
     "MULOP", "IN", "AS", "DOT", "BAR", "ELSE"}
)  # fmt: skip
# A `{` right after one of these opens a rule/every body, not an object or set.
BODY_OPENERS = frozenset(
    {"IF", "ELSE", "NAME", "NUMBER", "STRING", "RAW_STRING", "RSQB", "RPAR", "TRUE",
     "FALSE", "NULL", "RBRACE"}
)  # fmt: skip
# Reserved words: lexed as names, turned into their keyword tokens unless after a dot.
KEYWORDS = {
    word: word.upper()
    for word in [
        "package",
        "import",
        "default",
        "if",
        "else",
        "contains",
        "some",
        "every",
        "in",
        "not",
        "with",
        "as",
        "true",
        "false",
        "null",
    ]
}


def _own(type_: str, tok: Any, value: str | None = None) -> Token:
    """`tok` (lark's or ours) as our `Token` of type `type_`, positions kept."""
    return Token(
        type_,
        tok.value if value is None else value,
        tok.start_pos,
        tok.line,
        tok.column,
        tok.end_line,
        tok.end_column,
        tok.end_pos,
    )


class Postlexer:
    """Newlines become `_SEP` inside bodies, `{` opening a body becomes `LBODY`."""

    # The contextual lexer reads the token after a newline before the parser has
    # seen the separator we may insert, so anything that can start a statement
    # must be lexable in every state.
    always_accept = (
        "NEWLINE", "NAME", "NUMBER", "STRING", "RAW_STRING", "LSQB", "LPAR", "LBRACE", "ADDOP"
    )  # fmt: skip

    def process(self, stream: Iterator[Any]) -> Iterator[Token]:
        """lark's tokens in, our `Token`s out (`parse_fast` applies the same rules)."""
        stack: list[str] = []  # "body", "paren", "collection", "compr"
        query_mode: bool | None = None
        prev = ""
        pending: Token | None = None
        for lark_token in stream:
            tok = _own(lark_token.type, lark_token)
            if query_mode is None and tok.type != "NEWLINE":
                query_mode = tok.type != "PACKAGE"
            if tok.type == "NEWLINE":
                top = stack[-1] if stack else ("body" if query_mode else "top")
                if top in ("body", "compr") and prev and prev not in NO_SEP_AFTER:
                    pending = tok
                continue
            if tok.type == "NAME" and tok.value in KEYWORDS and prev != "DOT":
                # The contextual lexer lexed this before the parser saw a pending
                # separator, so it may not have recognised the keyword.
                tok = _own(KEYWORDS[tok.value], tok)
            if pending is not None:
                # As in OPA, a line starting with `-` continues the expression above.
                if tok.type not in NO_SEP_BEFORE and not (tok.type == "ADDOP" and tok == "-"):
                    yield _own("_SEP", pending, "\n")
                    prev = "_SEP"
                pending = None
            if tok.type == "LBRACE" and prev in BODY_OPENERS:
                tok = _own("LBODY", tok)
            self._track(stack, tok.type)
            yield tok
            prev = tok.type

    @staticmethod
    def _track(stack: list[str], kind: str) -> None:
        if kind == "LBODY":
            stack.append("body")
        elif kind in ("LBRACE", "LSQB"):
            stack.append("collection")
        elif kind == "LPAR":
            stack.append("paren")
        elif kind == "BAR" and stack and stack[-1] == "collection":
            stack[-1] = "compr"
        elif kind in ("RBRACE", "RSQB", "RPAR") and stack:
            stack.pop()
