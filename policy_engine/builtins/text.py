"""More string built-ins: strings.reverse, strings.count, strings.replace_n,
strings.any_prefix_match, strings.any_suffix_match, strings.split_n, strings.render_template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_int64,
    want_object,
    want_string,
)
from policy_engine.builtins.formatting import rego_text
from policy_engine.values import sort_key, type_name

__all__ = ["BUILTINS"]


def reverse(value: object) -> str:
    """The string's characters in reverse order."""
    return want_string("strings.reverse", 1, value)[::-1]


def count(search: object, substring: object) -> int:
    """How many non-overlapping times `substring` occurs in `search`."""
    text = want_string("strings.count", 1, search)
    part = want_string("strings.count", 2, substring)
    if part == "":
        return len(text) + 1  # Go: one more than the number of code points
    return text.count(part)


def replace_n(patterns: object, value: object) -> str:
    """Replaces every key of `patterns` by its value in one pass (keys tried in sorted order)."""
    mapping = want_object("strings.replace_n", 1, patterns)
    text = want_string("strings.replace_n", 2, value)
    pairs: list[tuple[str, str]] = []
    for old, new in mapping.items():
        if not isinstance(old, str):
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                "strings.replace_n: operand 1 non-string key found in pattern object",
            )
        if not isinstance(new, str):
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                "strings.replace_n: operand 1 non-string value found in pattern object",
            )
        pairs.append((old, new))
    pairs.sort()
    if not pairs:
        return text
    # Go's strings.NewReplacer: at each position the first pattern (sorted) that matches wins.
    table = dict(pairs)
    alternatives = "|".join(re.escape(old) for old, _ in pairs if old)
    if not alternatives:
        return text
    return re.sub(alternatives, lambda match: table[match.group(0)], text)


def _strings(name: str, position: int, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list, frozenset)):
        items: Iterable[Any] = (
            sorted(value, key=sort_key) if isinstance(value, frozenset) else value
        )
        found: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise BuiltinError(
                    EVAL_TYPE_ERROR,
                    f"{name}: operand {position} must be array of strings but got "
                    f"{type_name(value)} containing {type_name(item)}",
                )
            found.append(item)
        return found
    raise operand_error(name, position, "one of {string, set, array}", value)


def _any_match(name: str, test: Callable[[str, str], bool]) -> Callable[..., object]:
    def apply(search: object, base: object) -> bool:
        texts = _strings(name, 1, search)
        affixes = _strings(name, 2, base)
        return any(test(text, affix) for text in texts for affix in affixes)

    apply.__name__ = name.replace(".", "_")
    return apply


def split_n(value: object, delimiter: object, n: object) -> tuple[str, ...]:
    """The first n parts of the split string, or the last -n parts when n is negative."""
    text = want_string("strings.split_n", 1, value)
    separator = want_string("strings.split_n", 2, delimiter)
    count = want_int64("strings.split_n", 3, n)
    parts = list(text) if separator == "" else text.split(separator)
    if count >= 0:
        return tuple(parts[:count])
    return tuple(parts[count:])


def render_template(template: object, variables: object) -> str:
    """Go text/template with `{{.name}}` placeholders filled from an object."""
    text = want_string("strings.render_template", 1, template)
    values = want_object("strings.render_template", 2, variables)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            return "<no value>"
        found = values[key]
        return found if isinstance(found, str) else rego_text(found)

    rendered = re.sub(r"\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", fill, text)
    if "{{" in rendered:
        raise BuiltinError(
            BUILTIN_ERROR,
            "strings.render_template: only `{{.name}}` placeholders are supported",
        )
    return rendered


BUILTINS: tuple[Builtin, ...] = (
    builtin("strings.reverse", reverse, "(x: string) -> string", 'strings.reverse("abc")'),
    builtin(
        "strings.count",
        count,
        "(search: string, substring: string) -> number",
        'strings.count("banana", "a")',
    ),
    builtin(
        "strings.replace_n",
        replace_n,
        "(patterns: object[string, string], value: string) -> string",
        'strings.replace_n({"<": "&lt;", ">": "&gt;"}, "<b>")',
    ),
    builtin(
        "strings.any_prefix_match",
        _any_match("strings.any_prefix_match", str.startswith),
        "(search: string | array[string] | set[string], base: string | array[string]"
        " | set[string]) -> boolean",
        'strings.any_prefix_match("gpt-4o", ["claude", "gpt"])',
        doc="Whether any of the strings starts with any of the prefixes.",
    ),
    builtin(
        "strings.any_suffix_match",
        _any_match("strings.any_suffix_match", str.endswith),
        "(search: string | array[string] | set[string], base: string | array[string]"
        " | set[string]) -> boolean",
        'strings.any_suffix_match(["a.txt", "b.md"], ".md")',
        doc="Whether any of the strings ends with any of the suffixes.",
    ),
    builtin(
        "strings.split_n",
        split_n,
        "(x: string, delimiter: string, n: number) -> array[string]",
        'strings.split_n("a.b.c", ".", 2)',
    ),
    builtin(
        "strings.render_template",
        render_template,
        "(value: string, vars: object[string, any]) -> string",
        'strings.render_template("hello {{.name}}", {"name": "alice"})',
    ),
)
