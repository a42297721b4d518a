"""Find the comments in Rego source text (the parser drops them).

A comment is `#` to the end of the line, outside string and raw-string
literals. It is *standalone* when only blanks precede it on its line and
*trailing* when it follows code.
"""

from __future__ import annotations

import msgspec

__all__ = ["Comment", "scan_comments"]


class Comment(msgspec.Struct, frozen=True, kw_only=True):
    """One comment as written, without the line break."""

    line: int
    """1-based source line."""
    text: str
    """From `#` to the end of the line, trailing blanks removed."""
    standalone: bool
    """True when nothing but blanks precedes it on its line."""


def scan_comments(text: str) -> list[Comment]:
    """Every comment in `text`, in order."""
    found: list[Comment] = []
    line = 1
    line_start = 0
    i = 0
    size = len(text)
    while i < size:
        char = text[i]
        if char == "\n":
            line += 1
            line_start = i + 1
        elif char == '"':
            i = _skip_string(text, i)
            continue
        elif char == "`":
            end = text.find("`", i + 1)
            end = size if end < 0 else end + 1
            line += text.count("\n", i, end)
            if "\n" in text[i:end]:
                line_start = text.rfind("\n", i, end) + 1
            i = end
            continue
        elif char == "#":
            end = text.find("\n", i)
            end = size if end < 0 else end
            before = text[line_start:i]
            found.append(
                Comment(line=line, text=text[i:end].rstrip(), standalone=not before.strip())
            )
            i = end
            continue
        i += 1
    return found


def _skip_string(text: str, start: int) -> int:
    """The index after the string literal opening at `start` (or at the line end)."""
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i + 1
        if char == "\n":
            return i  # unterminated: the parser reports it
        i += 1
    return i
