"""glob.match (gobwas syntax, as OPA) and regex.match."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_engine.builtins import BUILTINS, BuiltinError


def call(name: str, *args: object) -> Any:
    return BUILTINS[name].fn(*args)


@pytest.mark.parametrize(
    ("pattern", "delimiters", "text", "expected"),
    [
        # The examples from OPA's documentation.
        ("*.github.com", [], "api.github.com", True),
        ("*.github.com", [], "api.cdn.github.com", False),
        ("*hub.com", None, "api.cdn.github.com", True),
        ("*:github:com", [":"], "api:github:com", True),
        ("api.**.com", [], "api.github.com", True),
        ("api.**.com", [], "api.cdn.github.com", True),
        ("?at", [], "cat", True),
        ("?at", [], "at", False),
        ("[abc]at", [], "bat", True),
        ("[!abc]at", [], "bat", False),
        ("[a-c]at", [], "cat", True),
        ("[!a-c]at", [], "lat", True),
        ("{cat,bat,[fr]at}", [], "rat", True),
        ("{cat,bat,[fr]at}", [], "at", False),
        ("[b-a]", [], "a", False),
        ("[!b-a]", [], "a", True),
        # Model allow lists, as the gateway uses them.
        ("gpt-4*", None, "gpt-4o-mini", True),
        ("gpt-4*", None, "gpt-3.5-turbo", False),
        ("openai/*", ["/"], "openai/gpt-4", True),
        ("openai/*", ["/"], "openai/x/y", False),
        ("*", [], "a.b", False),
        ("*", None, "a.b", True),
        ("**", [], "a.b", True),
        ("a\\*b", [], "a*b", True),
        ("a\\*b", [], "axb", False),
        ("a.b", [], "axb", False),
        ("", [], "", True),
        ("x", [], "xx", False),
    ],
)
def test_glob_match(pattern: str, delimiters: object, text: str, expected: bool) -> None:
    assert call("glob.match", pattern, delimiters, text) is expected


@pytest.mark.parametrize("pattern", ["[abc", "{a,b", "a\\", "[]"])
def test_glob_syntax_errors_are_builtin_errors(pattern: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call("glob.match", pattern, [], "abc")
    assert raised.value.code == "eval_builtin_error"
    assert raised.value.message.startswith("glob.match: invalid pattern")


def test_glob_operand_types() -> None:
    with pytest.raises(BuiltinError, match=r"operand 2 must be one of \{array, null\}"):
        call("glob.match", "*", "x", "abc")
    with pytest.raises(BuiltinError, match="operand 3 must be string"):
        call("glob.match", "*", [], 1)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("^gpt-4", "gpt-4o", True),
        ("4o$", "gpt-4o", True),
        ("mini", "gpt-4o-mini", True),
        ("^[a-z]+$", "abc1", False),
        ("(?i)GPT", "gpt", True),
    ],
)
def test_regex_match_searches_anywhere(pattern: str, text: str, expected: bool) -> None:
    assert call("regex.match", pattern, text) is expected


def test_bad_regex_is_a_builtin_error() -> None:
    with pytest.raises(BuiltinError) as raised:
        call("regex.match", "(", "x")
    assert raised.value.code == "eval_builtin_error"
    assert "error parsing regexp" in raised.value.message


# ---------------------------------------------------------------- properties


def _reference_glob(pattern: str, text: str, delimiter: str) -> bool:
    """A backtracking reading of the documented rules for patterns of `*`, `**`, `?`, letters."""
    if not pattern:
        return not text
    if pattern.startswith("**"):
        rest = pattern.lstrip("*")
        return any(_reference_glob(rest, text[i:], delimiter) for i in range(len(text) + 1))
    if pattern[0] == "*":
        return any(
            _reference_glob(pattern[1:], text[i:], delimiter)
            for i in range(len(text) + 1)
            if delimiter not in text[:i] or not delimiter
        )
    if not text:
        return False
    if pattern[0] == "?":
        return text[0] != delimiter and _reference_glob(pattern[1:], text[1:], delimiter)
    return text[0] == pattern[0] and _reference_glob(pattern[1:], text[1:], delimiter)


@given(
    st.text(alphabet="ab.*?", max_size=7),
    st.text(alphabet="ab.", max_size=7),
    st.sampled_from([None, []]),
)
def test_glob_match_agrees_with_a_reference_matcher(
    pattern: str, text: str, delimiters: list[str] | None
) -> None:
    delimiter = "" if delimiters is None else "."
    expected = _reference_glob(pattern, text, delimiter)
    assert call("glob.match", pattern, delimiters, text) is expected


@given(st.text(alphabet="ab*?[]!-", max_size=8), st.text(alphabet="ab-", max_size=6))
def test_glob_match_without_delimiters_agrees_with_fnmatch(pattern: str, text: str) -> None:
    try:
        result = call("glob.match", pattern, None, text)
    except BuiltinError:
        return  # gobwas rejects some classes fnmatch reads literally (`[`, `[]`)
    collapsed = re.sub(r"\*+", "*", pattern)
    assert result is fnmatch.fnmatchcase(text, collapsed)
