"""Policy source text and locations inside it.

A `Source` is one named text (a file or an in-memory module). A `Span` is a
half-open character range in it with the 1-based line and column of its start;
`snippet` renders the source line under a location with a caret below it.
"""

from __future__ import annotations

import msgspec

__all__ = ["Source", "Span", "snippet"]


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """One policy text and the name it is reported under."""

    name: str
    text: str

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its line break ("" past the end)."""
        lines = self.text.splitlines()
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return ""


class Span(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Where a node or a problem is: file name, 1-based line/column, end offsets.

    Not tracked by the garbage collector (`gc=False`): a name and numbers only.
    """

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def sort_key(self) -> tuple[str, int, int]:
        return (self.file, self.line, self.column)


NO_SPAN = Span(file="<none>", line=0, column=0)


def snippet(text: str, line: int, column: int) -> str:
    """The source line at `line` followed by a caret under `column` (both 1-based)."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    source_line = lines[line - 1].replace("\t", " ")
    caret = " " * max(column - 1, 0) + "^"
    return f"{source_line}\n{caret}"
