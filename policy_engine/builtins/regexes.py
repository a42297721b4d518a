"""More regex built-ins (Go RE2 syntax read by Python's re): regex.is_valid, find_n,
find_all_string_submatch_n, replace, split, template_match; glob.quote_meta.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    want_int64,
    want_string,
)

__all__ = ["BUILTINS", "regex"]


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regex(name: str, pattern: str) -> re.Pattern[str]:
    """The compiled pattern, or OPA's error for one that does not parse."""
    try:
        return _compiled(pattern)
    except (re.error, OverflowError, RecursionError) as problem:
        raise BuiltinError(
            BUILTIN_ERROR, f"{name}: error parsing regexp: {problem}: `{pattern}`"
        ) from None


def is_valid(pattern: object) -> bool:
    """Whether the value is a string holding a valid regular expression."""
    if not isinstance(pattern, str):
        return False
    try:
        regex("regex.is_valid", pattern)
    except BuiltinError:
        return False
    return True


def _limit(matches: list[Any], count: int) -> list[Any]:
    return matches if count < 0 else matches[:count]


def find_n(pattern: object, value: object, number: object) -> tuple[str, ...]:
    """The first n matches in the string (all of them when n is -1)."""
    compiled = regex("regex.find_n", want_string("regex.find_n", 1, pattern))
    text = want_string("regex.find_n", 2, value)
    count = want_int64("regex.find_n", 3, number)
    return tuple(_limit([m.group(0) for m in compiled.finditer(text)], count))


def find_all_string_submatch_n(pattern: object, value: object, number: object) -> Any:
    """The first n matches, each as [whole match, group 1, ...] (all when n is -1)."""
    name = "regex.find_all_string_submatch_n"
    compiled = regex(name, want_string(name, 1, pattern))
    text = want_string(name, 2, value)
    count = want_int64(name, 3, number)
    found = [(m.group(0), *(group or "" for group in m.groups())) for m in compiled.finditer(text)]
    return tuple(_limit(found, count))


_GO_GROUP: Final = re.compile(r"\$(\$|\{(\w+)\}|(\w+))")


def _expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.Expand: `$1`, `${1}`, `$name`; `$$` is a dollar; unknown groups are empty."""

    def group(found: re.Match[str]) -> str:
        if found.group(1) == "$":
            return "$"
        key = found.group(2) or found.group(3)
        try:
            value = match.group(int(key) if key.isdigit() else key)
        except IndexError:  # Go expands a group that does not exist to nothing
            return ""
        return value or ""

    return _GO_GROUP.sub(group, template)


def replace(value: object, pattern: object, replacement: object) -> str:
    """The string with every match of the pattern replaced (`$1` names a group)."""
    text = want_string("regex.replace", 1, value)
    compiled = regex("regex.replace", want_string("regex.replace", 2, pattern))
    template = want_string("regex.replace", 3, replacement)
    return compiled.sub(lambda match: _expand(template, match), text)


def split(pattern: object, value: object) -> tuple[str, ...]:
    """The parts of the string between matches of the pattern."""
    compiled = regex("regex.split", want_string("regex.split", 1, pattern))
    text = want_string("regex.split", 2, value)
    if text == "":
        return ("",)
    parts: list[str] = []
    start = 0
    for match in compiled.finditer(text):
        if match.end() == 0:
            continue  # Go skips an empty match at the very start
        parts.append(text[start : match.start()])
        start = match.end()
    parts.append(text[start:])
    return tuple(parts)


def template_match(template: object, value: object, start: object, end: object) -> bool:
    """Whether the string matches a template whose delimited parts are regexes (`urn:{.*}`)."""
    name = "regex.template_match"
    source = want_string(name, 1, template)
    text = want_string(name, 2, value)
    opener, closer = want_string(name, 3, start), want_string(name, 4, end)
    if len(opener) != 1 or len(closer) != 1:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: delimiters must be single characters")
    pieces: list[str] = []
    position = 0
    while position < len(source):
        begin = source.find(opener, position)
        if begin < 0:
            pieces.append(re.escape(source[position:]))
            break
        pieces.append(re.escape(source[position:begin]))
        depth, cursor = 0, begin
        while cursor < len(source):
            if source[cursor] == opener:
                depth += 1
            elif source[cursor] == closer:
                depth -= 1
                if depth == 0:
                    break
            cursor += 1
        if depth != 0:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: unbalanced braces in `{source}`")
        pieces.append(f"(?:{source[begin + 1 : cursor]})")
        position = cursor + 1
    compiled = regex(name, "^" + "".join(pieces) + "$")
    return compiled.search(text) is not None


_GLOB_META: Final = frozenset("*?\\[]{}")


def quote_meta(value: object) -> str:
    """The string with glob metacharacters escaped, to match it literally in glob.match."""
    text = want_string("glob.quote_meta", 1, value)
    return "".join("\\" + char if char in _GLOB_META else char for char in text)


BUILTINS: tuple[Builtin, ...] = (
    builtin("regex.is_valid", is_valid, "(pattern: string) -> boolean", 'regex.is_valid("^a+$")'),
    builtin(
        "regex.find_n",
        find_n,
        "(pattern: string, value: string, number: number) -> array[string]",
        'regex.find_n("a.", "paranormal", 2)',
    ),
    builtin(
        "regex.find_all_string_submatch_n",
        find_all_string_submatch_n,
        "(pattern: string, value: string, number: number) -> array[array[string]]",
        'regex.find_all_string_submatch_n("a(x*)b", "-ab-axb-", -1)',
    ),
    builtin(
        "regex.replace",
        replace,
        "(s: string, pattern: string, value: string) -> string",
        'regex.replace("gpt-4o-mini", "-(\\\\w+)$", "+$1")',
    ),
    builtin(
        "regex.split",
        split,
        "(pattern: string, value: string) -> array[string]",
        'regex.split("[,;]", "a,b;c")',
    ),
    builtin(
        "regex.template_match",
        template_match,
        "(template: string, value: string, delimiter_start: string, delimiter_end: string)"
        " -> boolean",
        'regex.template_match("urn:foo:{.*}", "urn:foo:bar", "{", "}")',
    ),
    builtin(
        "glob.quote_meta",
        quote_meta,
        "(pattern: string) -> string",
        'glob.quote_meta("*.example.com")',
    ),
)
