"""`policy-engine fmt`: canonical layout, comments kept, idempotent, same AST."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tooling_helpers import (
    CONFORMANCE,
    FIXTURES,
    GATEWAY_REGO,
    REPO,
    conformance_modules,
    run_cli,
    skip_without_conformance,
)

from policy_engine.errors import PolicyError
from policy_engine.parser import parse_module
from policy_engine.tooling.comments import scan_comments
from policy_engine.tooling.fmt import format_text

REPO_REGO = sorted(
    p for p in REPO.rglob("*.rego") if ".venv" not in p.parts and ".git" not in p.parts
)
OPA_MODULES = list(conformance_modules()) if CONFORMANCE.is_dir() else []


def _shape(node: Any) -> Any:
    """The AST as plain data without spans."""
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k != "span"}
    if isinstance(node, list | tuple):
        return [_shape(v) for v in node]
    return node


def _ast(text: str) -> Any:
    return _shape(msgspec.to_builtins(parse_module(text, "<fmt>")))


def assert_canonical(text: str) -> str:
    formatted = format_text(text, "<fmt>")
    assert _ast(formatted) == _ast(text), "formatting changed the meaning"
    assert format_text(formatted, "<fmt>") == formatted, "formatting is not idempotent"
    comments = [c.text for c in scan_comments(text)]
    kept = [c.text for c in scan_comments(formatted)]
    assert " ".join(kept).split() == " ".join(comments).split(), "comments lost or reordered"
    return formatted


def test_every_rego_file_in_the_repository_is_found() -> None:
    assert GATEWAY_REGO in REPO_REGO
    assert len(REPO_REGO) >= 5


@pytest.mark.parametrize("path", REPO_REGO, ids=lambda p: str(p.relative_to(REPO)))
def test_repository_files_format_idempotently_and_keep_their_ast(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        parse_module(text, str(path))
    except PolicyError:
        pytest.skip("a deliberately broken fixture: nothing to format")
    assert_canonical(text)


@pytest.mark.parametrize(
    ("case_id", "module"),
    OPA_MODULES or [("absent", "")],
    ids=[m[0] for m in OPA_MODULES] or ["absent"],
)
def test_opa_conformance_modules_format_idempotently_and_keep_their_ast(
    case_id: str, module: str
) -> None:
    skip_without_conformance()
    try:
        parse_module(module, case_id)
    except PolicyError:
        pytest.skip("the engine does not parse this module (listed in the conformance failures)")
    assert_canonical(module)


def test_shipped_policies_are_formatted() -> None:
    result = run_cli(["fmt", "--check", str(REPO / "policies")])
    assert result.status == 0, result.out


def test_messy_policy_gets_the_canonical_layout() -> None:
    messy = (FIXTURES / "fmt" / "messy.rego").read_text(encoding="utf-8")
    expected = (FIXTURES / "fmt" / "messy.formatted.rego").read_text(encoding="utf-8")
    assert assert_canonical(messy) == expected
    assert '\tinput.user == "alice"\n' in expected  # tabs, one statement per line
    assert "item.price > 100 # too expensive" in expected  # trailing comment kept in place


def test_check_and_diff_report_without_writing(tmp_path: Path) -> None:
    target = tmp_path / "messy.rego"
    original = (FIXTURES / "fmt" / "messy.rego").read_text(encoding="utf-8")
    target.write_text(original, encoding="utf-8")
    checked = run_cli(["fmt", "--check", str(target)])
    assert checked.status == 1
    assert f"{target}: not formatted" in checked.out
    diffed = run_cli(["fmt", "--diff", str(target)])
    assert diffed.status == 1
    assert "+total := (1 + 2) * 3" in diffed.out
    assert "-total := (1+2)*3" in diffed.out
    assert target.read_text(encoding="utf-8") == original


def test_fmt_rewrites_files_in_directories(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b.rego"
    nested.parent.mkdir()
    nested.write_text((FIXTURES / "fmt" / "messy.rego").read_text(encoding="utf-8"))
    result = run_cli(["fmt", str(tmp_path)])
    assert result.status == 0
    assert f"{nested}: formatted" in result.out
    assert nested.read_text() == (FIXTURES / "fmt" / "messy.formatted.rego").read_text()
    assert run_cli(["fmt", "--check", str(tmp_path)]).status == 0


def test_a_file_that_does_not_parse_is_reported_with_its_location(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rego"
    broken.write_text("package x\n\np if {\n", encoding="utf-8")
    result = run_cli(["fmt", "--check", str(broken)])
    assert result.status == 2
    assert f"{broken}:" in result.err
    assert "rego_parse_error" in result.err


def test_precedence_parentheses_are_kept_only_where_needed() -> None:
    text = "package p\n\nx := (1 + 2) * 3\ny := 1 + (2 * 3)\nz := {a | some a in [1]} | {2}\n"
    formatted = assert_canonical(text)
    assert "x := (1 + 2) * 3\n" in formatted
    assert "y := 1 + 2 * 3\n" in formatted


def test_strings_with_hashes_are_not_comments() -> None:
    text = 'package p\n\nx := "# not a comment" # a comment\ny := `raw # text`\n'
    formatted = assert_canonical(text)
    assert [c.text for c in scan_comments(formatted)] == ["# a comment"]


_GATEWAY_LINES = GATEWAY_REGO.read_text(encoding="utf-8").splitlines()


@functools.cache
def _gateway_formatted() -> str:
    """The default policy formatted, once for all the examples below."""
    return format_text("\n".join(_GATEWAY_LINES), "<fmt>")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(["", " ", "  ", "\t", "\t\t"]),
        min_size=len(_GATEWAY_LINES),
        max_size=len(_GATEWAY_LINES),
    )
)
def test_indentation_and_trailing_blanks_do_not_change_the_result(pads: list[str]) -> None:
    # The default policy has no multi-line string, so re-indenting it keeps its meaning.
    messy = "\n".join(
        pad + line.strip() + pad for pad, line in zip(pads, _GATEWAY_LINES, strict=True)
    )
    assert format_text(messy, "<fmt>") == _gateway_formatted()


def test_multi_line_raw_strings_are_kept_verbatim() -> None:
    text = "package p\n\nx := `line one\n   line two  \n# not a comment` # real\n"
    formatted = assert_canonical(text)
    assert "`line one\n   line two  \n# not a comment` # real\n" in formatted


def test_control_characters_in_strings_are_escaped() -> None:
    formatted = assert_canonical('package p\n\nz := "a\x00b"\n')
    assert 'z := "a\\u0000b"' in formatted


def test_line_breaks_other_than_newline_do_not_move_blank_lines() -> None:
    # Found by test_fmt_generated: a \x85 (NEL) in a string and lone \r are no line ends
    # to the parser, but str.splitlines counted them, so blank lines were misplaced
    # and a second fmt changed the output again.
    text = ' package  _ [\r\r"\x85"] import # a comment\n _ # a comment\n# a comment\n'
    formatted = assert_canonical(text)
    assert formatted.endswith("# a comment\n# a comment\n")
    assert_canonical('package p\n\nx := "a\u2028b"\n\ny := 1\n')


def test_standard_input_is_formatted_to_standard_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    messy = (FIXTURES / "fmt" / "messy.rego").read_text(encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(messy))
    result = run_cli(["fmt", "-"])
    assert result.status == 0
    assert result.out == (FIXTURES / "fmt" / "messy.formatted.rego").read_text(encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(messy))
    assert run_cli(["fmt", "--check", "-"]).status == 1


def _readme_examples() -> list[tuple[str, str]]:
    examples = []
    for readme in (REPO / "README.md", REPO / "policies" / "README.md"):
        text = readme.read_text(encoding="utf-8")
        for number, block in enumerate(re.findall(r"```rego\n(.*?)```", text, re.S)):
            examples.append((f"{readme.relative_to(REPO)}#{number}", block))
    return examples


@pytest.mark.parametrize(("where", "text"), _readme_examples(), ids=lambda v: str(v)[:40])
def test_readme_examples_pass_fmt_check(where: str, text: str, tmp_path: Path) -> None:
    # What a user copies from the documentation is what `fmt --check` accepts.
    file = tmp_path / "example.rego"
    file.write_text(text, encoding="utf-8")
    run = run_cli(["fmt", "--diff", str(file)])
    assert run.status == 0, f"{where} is not formatted:\n{run.out}"
