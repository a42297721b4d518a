"""Test cases written in YAML next to YAML IAM policies (`*.iam_test.yaml`).

```yaml
# policies/interns.iam_test.yaml
version: 1
query: data.gateway.decision        # optional; this is the default
input:                              # optional; every case's input is laid over it
  request: {operation: chat.completions, token_present: true, model: gpt-4}
cases:
  - name: interns cannot use gpt-4
    input: {project: {id: interns}}
    want: {allow: false, status: 403}
```

`want` is compared as a subset: every key it names must be there with that
value (objects recursively, arrays and scalars exactly).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from policy_engine.errors import COMPILE_ERROR, Diagnostic, PolicyError

__all__ = ["YAML_TEST_SUFFIX", "YamlCase", "find_yaml_tests", "load_yaml_tests", "matches"]

YAML_TEST_SUFFIX = ".iam_test.yaml"


class _Case(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    want: Any
    input: Any = None


class _File(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: int = 1
    query: str = "data.gateway.decision"
    input: Any = None
    cases: list[_Case] = msgspec.field(default_factory=list)


class YamlCase(msgspec.Struct, frozen=True, kw_only=True):
    """One case, ready to run: the query, the full input, what the result must contain."""

    name: str
    file: str
    line: int
    query: str
    input: Any
    want: Any


def find_yaml_tests(paths: list[Path]) -> list[Path]:
    """`*.iam_test.yaml` files named or found directly in the given directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.name.endswith(YAML_TEST_SUFFIX))
        elif path.name.endswith(YAML_TEST_SUFFIX):
            found.append(path)
    return found


def _merged(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merged(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override if override is not None else base)


def _case_lines(text: str) -> list[int]:
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "cases" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def load_yaml_tests(path: Path) -> list[YamlCase]:
    """The cases of one test file; raises `PolicyError` with the location of a bad field."""
    text = path.read_text(encoding="utf-8")
    try:
        document = msgspec.convert(yaml.safe_load(text) or {}, _File)
    except (msgspec.ValidationError, yaml.YAMLError) as exc:
        raise PolicyError(
            [
                Diagnostic(
                    code=COMPILE_ERROR,
                    message=f"invalid YAML test file: {exc}; see the format in the README "
                    "section `Writing and testing policies`",
                    file=str(path),
                    line=1,
                    column=1,
                )
            ]
        ) from None
    lines = _case_lines(text)
    return [
        YamlCase(
            name=case.name,
            file=str(path),
            line=lines[i] if i < len(lines) else 1,
            query=document.query,
            input=_merged(document.input, case.input),
            want=case.want,
        )
        for i, case in enumerate(document.cases)
    ]


def matches(got: Any, want: Any) -> bool:
    """True when `got` has everything `want` names (objects as subsets)."""
    if isinstance(want, Mapping):
        return isinstance(got, Mapping) and all(
            key in got and matches(got[key], value) for key, value in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(got, list | tuple)
            and len(got) == len(want)
            and all(matches(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    return bool(got == want)
