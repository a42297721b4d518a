"""String built-ins with Go's semantics (indexes count code points, not bytes).

concat contains startswith endswith lower upper split replace substring
indexof indexof_n trim trim_space trim_prefix trim_suffix trim_left trim_right
format_int lives with the numbers; sprintf has its own module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    want_collection,
    want_int64,
    want_string,
)
from policy_engine.values import sort_key, type_name

__all__ = ["BUILTINS"]

# Go's unicode.IsSpace set, which strings.TrimSpace strips.
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def concat(delimiter: object, collection: object) -> str:
    """Join strings with `delimiter`; a set is joined in sorted order."""
    joiner = want_string("concat", 1, delimiter)
    items = want_collection("concat", 2, collection)
    if isinstance(items, frozenset):
        items = sorted(items, key=sort_key)
    parts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f"concat: operand 2 must be array of strings "
                f"but got {type_name(collection)} containing {type_name(item)}",
            )
        parts.append(item)
    return joiner.join(parts)


def _two_strings(name: str, test: Callable[[str, str], object]) -> Callable[..., object]:
    def apply(a: object, b: object) -> object:
        return test(want_string(name, 1, a), want_string(name, 2, b))

    apply.__name__ = name.replace(".", "_")
    return apply


def _one_string(name: str, change: Callable[[str], str]) -> Callable[..., object]:
    def apply(a: object) -> object:
        return change(want_string(name, 1, a))

    apply.__name__ = name
    return apply


def split(text: str, delimiter: str) -> tuple[str, ...]:
    if delimiter == "":
        return tuple(text)  # Go splits into characters; "" gives []
    return tuple(text.split(delimiter))


def replace(text: object, old: object, new: object) -> str:
    return want_string("replace", 1, text).replace(
        want_string("replace", 2, old), want_string("replace", 3, new)
    )


def substring(text: object, start: object, length: object) -> str:
    """`length` code points from `start`; a negative length means "to the end"."""
    characters = want_string("substring", 1, text)
    offset = want_int64("substring", 2, start)
    count = want_int64("substring", 3, length)  # every operand is checked, as in OPA
    if offset >= len(characters):
        return ""
    if offset < 0:
        raise BuiltinError(BUILTIN_ERROR, "substring: negative offset")
    return characters[offset:] if count < 0 else characters[offset : offset + count]


def _search(name: str, text: str, search: str) -> str:
    if search == "":
        raise BuiltinError(BUILTIN_ERROR, f"{name}: empty search character")
    return search


def indexof(text: str, search: str) -> int:
    return text.find(_search("indexof", text, search))


def indexof_n(text: str, search: str) -> tuple[int, ...]:
    """Every index where `search` starts, overlapping matches included."""
    pattern = re.compile(f"(?={re.escape(_search('indexof_n', text, search))})")
    return tuple(match.start() for match in pattern.finditer(text))


def trim_space(text: str) -> str:
    return text.strip(_GO_SPACE)


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "concat",
        concat,
        "(delimiter: string, collection: array[string] | set[string]) -> string",
        'concat(", ", ["a", "b"])',
    ),
    builtin(
        "contains",
        _two_strings("contains", lambda s, sub: sub in s),
        "(haystack: string, needle: string) -> boolean",
        'contains("gpt-4o-mini", "mini")',
        doc="Whether the string contains the substring.",
    ),
    builtin(
        "startswith",
        _two_strings("startswith", str.startswith),
        "(search: string, base: string) -> boolean",
        'startswith("gpt-4o", "gpt")',
        doc="Whether the string starts with the prefix.",
    ),
    builtin(
        "endswith",
        _two_strings("endswith", str.endswith),
        "(search: string, base: string) -> boolean",
        'endswith("gpt-4o", "4o")',
        doc="Whether the string ends with the suffix.",
    ),
    builtin(
        "lower",
        _one_string("lower", str.lower),
        "(x: string) -> string",
        'lower("GPT")',
        doc="The string in lower case.",
    ),
    builtin(
        "upper",
        _one_string("upper", str.upper),
        "(x: string) -> string",
        'upper("gpt")',
        doc="The string in upper case.",
    ),
    builtin(
        "split",
        _two_strings("split", split),
        "(x: string, delimiter: string) -> array[string]",
        'split("a,b,c", ",")',
        doc="The parts of the string between the delimiters.",
    ),
    builtin(
        "replace",
        replace,
        "(x: string, old: string, new: string) -> string",
        'replace("a-b-c", "-", "+")',
        doc="The string with every occurrence of old replaced by new.",
    ),
    builtin(
        "substring",
        substring,
        "(value: string, offset: number, length: number) -> string",
        'substring("abcdef", 1, 3)',
    ),
    builtin(
        "indexof",
        _two_strings("indexof", indexof),
        "(haystack: string, needle: string) -> number",
        'indexof("abcabc", "c")',
        doc="The index of the first occurrence of the substring, -1 if absent (code points).",
    ),
    builtin(
        "indexof_n",
        _two_strings("indexof_n", indexof_n),
        "(haystack: string, needle: string) -> array[number]",
        'indexof_n("abcabc", "c")',
        doc="The indexes of every occurrence of the substring, overlapping ones included.",
    ),
    builtin(
        "trim",
        _two_strings("trim", str.strip),
        "(value: string, cutset: string) -> string",
        'trim("--a--", "-")',
        doc="The string with leading and trailing characters of the cutset removed.",
    ),
    builtin(
        "trim_left",
        _two_strings("trim_left", str.lstrip),
        "(value: string, cutset: string) -> string",
        'trim_left("--a--", "-")',
        doc="The string with leading characters of the cutset removed.",
    ),
    builtin(
        "trim_right",
        _two_strings("trim_right", str.rstrip),
        "(value: string, cutset: string) -> string",
        'trim_right("--a--", "-")',
        doc="The string with trailing characters of the cutset removed.",
    ),
    builtin(
        "trim_prefix",
        _two_strings("trim_prefix", str.removeprefix),
        "(value: string, prefix: string) -> string",
        'trim_prefix("gpt-4o", "gpt-")',
        doc="The string without the prefix, if it has it.",
    ),
    builtin(
        "trim_suffix",
        _two_strings("trim_suffix", str.removesuffix),
        "(value: string, suffix: string) -> string",
        'trim_suffix("gpt-4o", "-4o")',
        doc="The string without the suffix, if it has it.",
    ),
    builtin(
        "trim_space",
        _one_string("trim_space", trim_space),
        "(value: string) -> string",
        'trim_space("  a  ")',
        doc="The string without leading and trailing white space.",
    ),
)
