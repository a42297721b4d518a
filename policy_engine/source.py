"""Policy source text and locations inside it.

A `Source` is one named text (a file or an in-memory module). A `Span` is a
half-open character range in it with the 1-based line and column of its start;
`snippet` renders the source line under a location with a caret below it.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["Source", "Span", "line_start", "snippet", "source_lines"]

# YAML 1.1 (PyYAML, which reads the `*.iam.yaml` files) also ends a line at "\r",
# NEL and the Unicode line and paragraph separators.
_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def source_lines(text: str, file: str = "") -> list[str]:
    """The lines of `text` as its parser counts them, without their line breaks.

    Rego lines end only at "\n" (a "\r" before it is not part of the line); not
    `str.splitlines`, which also splits at "\x0b", "\x0c", "\x1c"-"\x1e", "\x85",
    U+2028 and U+2029, characters a string literal or a comment may hold, and would
    put every later line number and caret off. A YAML file (`file` ending in `.yaml`
    or `.yml`) is split at YAML's line breaks, as its parser reports them."""
    if file.endswith((".yaml", ".yml")):
        return _YAML_LINE_BREAK.split(text)
    return [line.removesuffix("\r") for line in text.split("\n")]


def line_start(text: str, line: int) -> int:
    """The offset in `text` where 1-based Rego `line` starts (only "\n" ends a line);
    `len(text)` past the end."""
    start = 0
    for _ in range(line - 1):
        found = text.find("\n", start)
        if found < 0:
            return len(text)
        start = found + 1
    return start


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """One policy text and the name it is reported under."""

    name: str
    text: str

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its line break ("" past the end)."""
        lines = source_lines(self.text, self.name)
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


def snippet(text: str, line: int, column: int, file: str = "") -> str:
    """The source line at `line` followed by a caret under `column` (both 1-based);
    `file` names the text (a YAML file counts its lines as YAML does)."""
    lines = source_lines(text, file)
    if not 1 <= line <= len(lines):
        return ""
    source_line = lines[line - 1].replace("\t", " ")
    caret = " " * max(column - 1, 0) + "^"
    return f"{source_line}\n{caret}"
