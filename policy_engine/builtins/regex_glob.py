"""Pattern built-ins: regex.match (Go RE2 syntax, read by Python's re) and glob.match.

glob.match follows the gobwas/glob syntax OPA uses: `*` any run of characters
except delimiters, `**` any run including delimiters, `?` one non-delimiter
character, `[abc]` `[a-z]` `[!abc]` character classes, `{a,b}` alternatives
(nestable), and backslash escapes. Compiled patterns are kept in bounded LRU
caches: a cache only saves work, it never changes a result.
"""

from __future__ import annotations

import re
from functools import lru_cache

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_array,
    want_string,
)
from policy_engine.values import type_name

__all__ = ["BUILTINS", "compile_glob"]


# ---------------------------------------------------------------- regex


@lru_cache(maxsize=512)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regex_match(pattern: object, value: object) -> bool:
    """True when `pattern` matches anywhere in `value` (Go's MatchString)."""
    text = want_string("regex.match", 2, value)
    source = want_string("regex.match", 1, pattern)
    try:
        compiled = _compile_regex(source)
    except (re.error, OverflowError, RecursionError) as problem:
        raise BuiltinError(
            BUILTIN_ERROR, f"regex.match: error parsing regexp: {problem}: `{source}`"
        ) from None
    return compiled.search(text) is not None


# ---------------------------------------------------------------- glob


class _GlobSyntaxError(Exception):
    pass


class _GlobTranslator:
    """Recursive-descent translation of one glob into a Python regular expression."""

    def __init__(self, pattern: str, delimiters: str) -> None:
        self.pattern = pattern
        self.position = 0
        excluded = "".join(re.escape(d) for d in delimiters)
        self.one = f"[^{excluded}]" if delimiters else "."

    def translate(self) -> str:
        regex = self._sequence(in_braces=False)
        if self.position < len(self.pattern):
            raise _GlobSyntaxError(f"unexpected `{self.pattern[self.position]}`")
        return regex

    def _sequence(self, in_braces: bool) -> str:
        parts: list[str] = []
        while self.position < len(self.pattern):
            char = self.pattern[self.position]
            if in_braces and char in ",}":
                break
            parts.append(self._element(char))
        return "".join(parts)

    def _element(self, char: str) -> str:
        self.position += 1
        if char == "*":
            if self.position < len(self.pattern) and self.pattern[self.position] == "*":
                while self.position < len(self.pattern) and self.pattern[self.position] == "*":
                    self.position += 1
                return ".*"
            return f"{self.one}*"
        if char == "?":
            return self.one
        if char == "[":
            return self._character_class()
        if char == "{":
            return self._alternatives()
        if char == "\\":
            return re.escape(self._take("escaped character"))
        return re.escape(char)

    def _take(self, what: str) -> str:
        if self.position >= len(self.pattern):
            raise _GlobSyntaxError(f"unexpected end of pattern, expected {what}")
        char = self.pattern[self.position]
        self.position += 1
        return char

    def _character_class(self) -> str:
        negate = self.position < len(self.pattern) and self.pattern[self.position] == "!"
        self.position += negate
        members: list[str] = []
        empty = True
        while (char := self._take("`]`")) != "]":
            empty = False
            if self._at_range():
                self.position += 1
                high = self._take("range end")
                if char <= high:  # a reversed range like `b-a` matches nothing
                    members.append(f"{re.escape(char)}-{re.escape(high)}")
            else:
                members.append(re.escape(char))
        if empty:
            raise _GlobSyntaxError("empty character class")
        if not members:
            return "(?s:.)" if negate else "(?!)"
        return f"[{'^' if negate else ''}{''.join(members)}]"

    def _at_range(self) -> bool:
        """Whether a `-` follows that makes a range (not a trailing literal `-`)."""
        rest = self.pattern[self.position : self.position + 2]
        return len(rest) == 2 and rest[0] == "-" and rest[1] != "]"

    def _alternatives(self) -> str:
        options = [self._sequence(in_braces=True)]
        while self._take("`}`") == ",":
            options.append(self._sequence(in_braces=True))
        return f"(?:{'|'.join(options)})"


@lru_cache(maxsize=1024)
def compile_glob(pattern: str, delimiters: str) -> re.Pattern[str]:
    """The regular expression equivalent to a glob; raises BuiltinError on bad syntax."""
    try:
        regex = _GlobTranslator(pattern, delimiters).translate()
    except _GlobSyntaxError as problem:
        raise BuiltinError(
            BUILTIN_ERROR, f"glob.match: invalid pattern `{pattern}`: {problem}"
        ) from None
    return re.compile(regex, re.DOTALL)


def _delimiters(value: object) -> str:
    """null means no delimiters; an empty array means the default `.`."""
    if value is None:
        return ""
    items = want_array("glob.match", 2, value) if isinstance(value, (tuple, list)) else None
    if items is None:
        raise operand_error("glob.match", 2, "one of {array, null}", value)
    for item in items:
        if not isinstance(item, str) or len(item) != 1:
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                "glob.match: operand 2 must be array of single characters "
                f"but got array containing {type_name(item)}",
            )
    return "".join(items) or "."


def glob_match(pattern: object, delimiters: object, value: object) -> bool:
    if delimiters is None and type(pattern) is str and type(value) is str:
        return compile_glob(pattern, "").fullmatch(value) is not None  # hot path
    source = want_string("glob.match", 1, pattern)
    separators = _delimiters(delimiters)
    text = want_string("glob.match", 3, value)
    return compile_glob(source, separators).fullmatch(text) is not None


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "regex.match",
        regex_match,
        "(pattern: string, value: string) -> boolean",
        'regex.match("^gpt-4", "gpt-4o")',
    ),
    builtin(
        "glob.match",
        glob_match,
        "(pattern: string, delimiters: null | array[string], match: string) -> boolean",
        'glob.match("gpt-*", null, "gpt-4o")',
        doc="Whether the string matches the glob pattern; delimiters (default `.`) bound `*`.",
    ),
)
