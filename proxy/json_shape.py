"""Checks on a request body's raw bytes that must run before it is decoded.

The JSON decoder recurses once per nesting level, so a body such as 100,000 `[`
would exhaust the interpreter's stack (a RecursionError, i.e. a 500). The scan here
is iterative: it finds how deep the body nests without building anything, and the
body is refused with a 400 naming the depth before the decoder ever sees it.
"""

from __future__ import annotations

import re

__all__ = ["DEFAULT_MAX_DEPTH", "nesting_problem", "utf8_problem"]

DEFAULT_MAX_DEPTH = 64
_OPENERS = frozenset(b"[{")
# A JSON string (escapes included) or one bracket; everything else is skipped in C.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def nesting_problem(body: bytes, max_depth: int) -> str | None:
    """Why `body` nests deeper than `max_depth` arrays/objects, or None if it does not.

    Brackets inside strings do not count. The common case (fewer brackets in the whole
    body than the limit) is decided by two byte counts without a scan."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return None
    depth = 0
    for match in _TOKEN.finditer(body):
        first = body[match.start()]
        if first in _OPENERS:
            depth += 1
            if depth > max_depth:
                return (
                    f"Invalid request body: nested deeper than {max_depth} levels "
                    f"(at byte {match.start()}); flatten the structure"
                )
        elif first != 0x22:  # a closing bracket (not a string)
            depth = max(depth - 1, 0)
    return None


def utf8_problem(body: bytes) -> str | None:
    """Where `body` stops being valid UTF-8, or None when it is valid."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.start + 1].hex()
        return (
            f"Invalid request body: not valid UTF-8 (byte 0x{bad} at offset {exc.start}); "
            "send the body encoded as UTF-8"
        )
    return None
