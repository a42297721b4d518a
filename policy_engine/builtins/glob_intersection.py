"""regex.globs_match: whether two glob-like patterns match a common non-empty string.

As in OPA, only `.`, `*`, `+`, `[`, `-`, `]` and `\\` are special: a pattern is
a sequence of character sets (a literal, `.`, or a class `[a-z0-9]`), each
optionally followed by `*` or `+`. The answer is a search over pairs of
positions in the two patterns (their product automaton), so it never expands
a pattern into strings.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from policy_engine.builtins.base import BUILTIN_ERROR, Builtin, BuiltinError, builtin, want_string

__all__ = ["BUILTINS"]

# A character set: None is any character, else inclusive code-point ranges.
_Chars = tuple[tuple[int, int], ...] | None
# One step of a pattern: its character set and whether it may repeat / be skipped.
_Step = tuple[_Chars, bool, bool]  # (chars, repeat, optional)


def _invalid(pattern: str, position: int, what: str) -> BuiltinError:
    return BuiltinError(
        BUILTIN_ERROR,
        f"regex.globs_match: input:{pattern}, pos:{position}, {what}: "
        "the input provided is invalid",
    )


def _class(pattern: str, start: int) -> tuple[_Chars, int]:
    ranges: list[tuple[int, int]] = []
    position = start + 1
    while position < len(pattern) and pattern[position] != "]":
        low = pattern[position]
        if low == "\\" and position + 1 < len(pattern):
            position += 1
            low = pattern[position]
        high = low
        dash, after = pattern[position + 1 : position + 2], pattern[position + 2 : position + 3]
        if dash == "-" and after not in ("", "]"):  # a range; a trailing `-` is literal
            high = after
            position += 2
        ranges.append((ord(low), ord(high)))
        position += 1
    if position >= len(pattern):
        raise _invalid(pattern, start, "set-open '[' with no closing ']'")
    return tuple(ranges), position + 1


def _steps(pattern: str) -> list[_Step]:
    steps: list[_Step] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        chars: _Chars
        if char == "[":
            chars, position = _class(pattern, position)
        elif char == "]":
            raise _invalid(pattern, position + 1, "set-close ']' with no preceding '['")
        elif char in "*+":
            raise _invalid(pattern, position, f"'{char}' with nothing to repeat")
        elif char == ".":
            chars, position = None, position + 1
        else:
            if char == "\\" and position + 1 < len(pattern):
                position += 1
                char = pattern[position]
            chars, position = ((ord(char), ord(char)),), position + 1
        quantifier = pattern[position : position + 1]
        if quantifier == "*":
            steps.append((chars, True, True))
            position += 1
        elif quantifier == "+":
            steps.append((chars, False, False))
            steps.append((chars, True, True))
            position += 1
        else:
            steps.append((chars, False, False))
    return steps


def _overlap(a: _Chars, b: _Chars) -> bool:
    if a is None or b is None:
        return (a or b) != ()
    return any(low_a <= high_b and low_b <= high_a for low_a, high_a in a for low_b, high_b in b)


def _closure(steps: list[_Step], index: int) -> list[int]:
    """The positions reachable from `index` by skipping optional steps."""
    found = [index]
    while index < len(steps) and steps[index][2]:
        index += 1
        found.append(index)
    return found


_LIMIT: Final = 1_000_000


def globs_match(glob1: object, glob2: object) -> bool:
    """Whether some non-empty string matches both patterns."""
    first = _steps(want_string("regex.globs_match", 1, glob1))
    second = _steps(want_string("regex.globs_match", 2, glob2))
    start = [(i, j, False) for i in _closure(first, 0) for j in _closure(second, 0)]
    seen = set(start)
    queue = deque(start)
    while queue:
        i, j, consumed = queue.popleft()
        if consumed and i == len(first) and j == len(second):
            return True
        if i == len(first) or j == len(second) or not _overlap(first[i][0], second[j][0]):
            continue
        # One character read by both: a repeating step may stay, any step may move on.
        next_i = ([i] if first[i][1] else []) + _closure(first, i + 1)
        next_j = ([j] if second[j][1] else []) + _closure(second, j + 1)
        for a in next_i:
            for b in next_j:
                state = (a, b, True)
                if state not in seen and len(seen) < _LIMIT:
                    seen.add(state)
                    queue.append(state)
    return False


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "regex.globs_match",
        globs_match,
        "(glob1: string, glob2: string) -> boolean",
        'regex.globs_match("gpt-4.*", "gpt-4o-[a-z]+")',
    ),
)
