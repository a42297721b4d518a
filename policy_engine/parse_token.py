"""The parser's token: its text, type and position (used only by the parser modules).

Both parsers produce it: the table-driven one (`parse_fast`) directly, lark's
(`parse_build`, kept for exact syntax errors) through the postlexer, so the AST
builder sees one kind of token whichever ran. Attribute names are lark's, since
lark's parser and its exceptions read them.
"""

from __future__ import annotations

__all__ = ["Token"]


class Token(str):
    """A lexed token: a `str` of its text with lark's attribute names."""

    type: str
    value: str
    start_pos: int
    line: int
    column: int
    end_line: int
    end_column: int
    end_pos: int
    empty = False  # as a parser value beside `parse_reduce.Node`s: a token has an extent

    def __new__(
        cls,
        type_: str,
        value: str,
        start_pos: int,
        line: int,
        column: int,
        end_line: int,
        end_column: int,
        end_pos: int,
    ) -> Token:
        token = str.__new__(cls, value)
        # One dict rather than eight attribute stores: a third faster, per token.
        token.__dict__ = {
            "type": type_,
            "value": value,
            "start_pos": start_pos,
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "end_pos": end_pos,
        }
        return token

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r})"
