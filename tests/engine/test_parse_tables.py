"""The table-driven parser (`parse_fast`) is lark's parser without lark.

`parse_tables.json` is what `python -m policy_engine.parse_tables` exports from
the grammar today, and on every policy and query of the test corpora (and on
generated and random texts) the two parsers agree: the same AST, or both
reject the text (lark then reports the error, so errors are lark's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from test_properties import GENERATOR_GRAMMAR, SEPARATORS, SETTINGS

from policy_engine.parse_build import parse_to_ast
from policy_engine.parse_fast import NotParsed, parse_fast
from policy_engine.parse_tables import TABLES_PATH, render
from policy_engine.parse_tree import SyntaxProblem
from policy_engine.parser import lark_parser

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "conformance"


def test_shipped_tables_are_the_grammars() -> None:
    assert TABLES_PATH.read_text(encoding="utf-8") == render(), (
        "grammar.lark changed: run `python -m policy_engine.parse_tables`"
    )


def test_the_export_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """lark numbers its states in an order that follows string hashes, and caches the
    tables in the temp directory; the export renumbers them canonically, so a process
    with another seed and no cache (a fresh machine) exports the same file."""
    for seed in ("1", "2"):
        temp = tmp_path / seed
        temp.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed, "TMPDIR": str(temp)}
        exported = subprocess.run(
            [sys.executable, "-c", "import sys; from policy_engine.parse_tables import render;"
             " sys.stdout.write(render())"],
            env=env, cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert list(temp.iterdir()), "lark did not build its tables afresh in the temp dir"
        assert exported == TABLES_PATH.read_text(encoding="utf-8"), f"seed {seed}"


def _lark(text: str, start: str) -> Any:
    try:
        return parse_to_ast(lark_parser(), text, "t.rego", start)
    except Exception as exc:  # any rejection: lark's errors and SyntaxProblem
        return type(exc)


def _agree(text: str, start: str) -> bool:
    """Whether parse_fast matches lark's parser on `text` (accepted: the same AST)."""
    expected = _lark(text, start)
    try:
        got = parse_fast(text, "t.rego", start)
    except (NotParsed, SyntaxProblem, RecursionError):
        return isinstance(expected, type)
    return not isinstance(expected, type) and got == expected


def _texts() -> list[tuple[str, str, str]]:
    """(where, start, text): the repository's policies and every case's modules and queries."""
    found = [
        (str(path.relative_to(REPO)), "module", path.read_text(encoding="utf-8"))
        for folder in ("policies", "tests")
        for path in sorted((REPO / folder).rglob("*.rego"))
    ]
    for root in (REPO / "tests" / "cases", SHARED):
        for path in sorted(root.rglob("*.yaml")) if root.is_dir() else []:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            cases = document.get("cases", []) if isinstance(document, dict) else []
            for case in cases if isinstance(cases, list) else []:
                if not isinstance(case, dict):
                    continue
                modules = case.get("modules") or []
                for module in modules if isinstance(modules, list) else []:
                    if isinstance(module, str):
                        found.append((str(path), "module", module))
                if isinstance(case.get("query"), str):
                    found.append((str(path), "query", case["query"]))
    return found


def test_both_parsers_agree_on_the_corpora() -> None:
    texts = _texts()
    assert len(texts) > 100
    disagree = [where for where, start, text in texts if not _agree(text, start)]
    assert not disagree, disagree[:5]


@SETTINGS
@given(from_lark(GENERATOR_GRAMMAR, start="module", explicit=SEPARATORS))
def test_both_parsers_agree_on_grammar_texts(text: str) -> None:
    assert _agree(text, "module")
    rest = text.partition("\n")[2]
    if rest.strip():
        assert _agree(rest, "query")


@SETTINGS
@given(st.binary(max_size=300))
def test_both_parsers_agree_on_random_text(data: bytes) -> None:
    text = data.decode("latin-1")
    assert _agree("package p\n" + text, "module")
    assert _agree(text, "query")


@pytest.mark.parametrize(
    "text",
    [
        "package p\nx := {a: 1 | true}\n",  # `|` after an object item: a comprehension
        "package p\np if {\n  x := 1\n  - 2\n}\n",  # a line starting `-` continues
        "package p\nq := x.if\n",  # a keyword after `.` is a name
        "package p\n\n\n",
        "",
    ],
)
def test_both_parsers_agree_on_edges(text: str) -> None:
    assert _agree(text, "module")
