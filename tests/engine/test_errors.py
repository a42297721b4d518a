"""How problems read: codes, positions, the rendered snippet, friendly messages."""

from __future__ import annotations

import pytest

from policy_engine import Engine, PolicyError
from policy_engine.errors import Diagnostic, render
from policy_engine.parser import parse_module, parse_query


def _problem(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_module(text, "p.rego")
    return caught.value


def test_render_has_location_code_message_line_and_caret() -> None:
    diagnostic = Diagnostic(
        code="rego_parse_error", message="oops", file="p.rego", line=2, column=3
    )
    assert render(diagnostic, {"p.rego": "package p\nx := ]\n"}) == (
        "p.rego:2:3: rego_parse_error: oops\nx := ]\n  ^"
    )


def test_render_without_source_is_one_line() -> None:
    diagnostic = Diagnostic(code="c", message="m", file="f.rego", line=1, column=1)
    assert render(diagnostic) == "f.rego:1:1: c: m"


def test_missing_if_is_explained() -> None:
    assert "need the `if` keyword" in _problem("package p\nq { true }\n").diagnostics[0].message


def test_missing_comma_is_suggested() -> None:
    message = _problem('package p\nx := {"a": 1 "b": 2}\n').diagnostics[0].message
    assert "is a `,` missing?" in message


def test_missing_closing_bracket_points_at_the_end() -> None:
    problem = _problem("package p\nx := [1, 2\n")
    assert problem.diagnostics[0].message.startswith("unexpected end of text")


def test_missing_package_is_explained() -> None:
    assert "must start with `package" in _problem("x := 1\n").diagnostics[0].message


def test_unterminated_string_is_explained() -> None:
    assert "unterminated string" in _problem('package p\nx := "abc\n').diagnostics[0].message


def test_lark_never_escapes_for_garbage() -> None:
    for text in ["package p\n\x00\x01", "package p\n}}}}", "", "package", "package p\nx := @"]:
        with pytest.raises(PolicyError) as caught:
            parse_module(text, "g.rego")
        assert caught.value.code == "rego_parse_error"


def test_query_errors_are_parse_errors() -> None:
    for text in ["", "x :=", "package p", "data.x = = 1"]:
        with pytest.raises(PolicyError) as caught:
            parse_query(text)
        assert caught.value.code == "rego_parse_error"


def test_unsafe_variable_is_named() -> None:
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources({"u.rego": "package u\np if { count(zz) > 1 }\n"})
    assert caught.value.code == "rego_unsafe_var_error"
    assert "var `zz` is unsafe" in caught.value.diagnostics[0].message


def test_recursion_names_the_cycle() -> None:
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources({"r.rego": "package r\na := b\nb := c\nc := a\n"})
    messages = [d.message for d in caught.value.diagnostics]
    assert len(messages) == 3
    assert "r.a -> r.b -> r.c -> r.a" in messages[0]


@pytest.mark.parametrize(
    ("condition", "hint"),
    [
        ("input.x == 1 and input.y == 2", "Rego has no `and`"),
        ("input.x == 1 && input.y == 2", "Rego has no `and`"),
        ("input.x == 1 or input.y == 2", "Rego has no `or`"),
        ('input.x == "a" || true', "Rego has no `or`"),
        ("input.x === 1", "use `==` to compare"),
    ],
)
def test_habits_from_other_languages_get_a_hint(condition: str, hint: str) -> None:
    problem = _problem(f"package p\nallow if {{\n  {condition}\n}}\n")
    assert hint in problem.diagnostics[0].message
    assert problem.diagnostics[0].line == 3


def test_static_checks_are_named_stages_shared_by_every_engine() -> None:
    # The tracing engine behind `eval --explain` runs the same stages as the engine.
    from policy_engine.check import STAGES
    from policy_engine.tooling.trace import traced_engine

    assert [stage.name for stage in STAGES] == ["recursion", "redeclared"]
    source = {"p.rego": "package p\n\nf(x) := 1 if {\n\tx := 1\n}\n"}
    with pytest.raises(PolicyError, match="redeclared"):
        Engine.from_sources(source)
    with pytest.raises(PolicyError, match="redeclared"):
        traced_engine(source)


# Characters str.splitlines() takes for line breaks; Rego ends a line only at "\n".
_NOT_LINE_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", _NOT_LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_line_break_only_to_python_does_not_move_the_reported_position(char: str) -> None:
    """One of these in a string or a comment put every later line number and caret off:
    the snippet showed the wrong line, and the error after a second parse problem was
    placed at the wrong offset."""
    text = (
        "package p\n"
        f'greeting := "a{char}b"  # c{char}d\n'
        "x := ]\n"  # line 3, column 6
        f"# after{char}again\n"
        "y := ]\n"  # line 5, column 6: found by the per-rule pass from the first's offset
    )
    problem = _problem(text)
    assert [(d.line, d.column) for d in problem.diagnostics] == [(3, 6), (5, 6)]
    rendered = str(problem)
    assert "p.rego:3:6: rego_parse_error:" in rendered
    assert "\nx := ]\n     ^" in rendered
    assert "p.rego:5:6: rego_parse_error:" in rendered
    assert "\ny := ]\n     ^" in rendered


def test_crlf_lines_render_without_the_carriage_return() -> None:
    problem = _problem("package p\r\nx := ]\r\n")
    assert (problem.diagnostics[0].line, problem.diagnostics[0].column) == (2, 6)
    assert "\nx := ]\n     ^" in str(problem)


def test_the_end_of_text_after_such_a_character_is_on_the_last_line() -> None:
    problem = _problem('package p\nx := "\u2028" + [1,\n')
    diagnostic = problem.diagnostics[0]
    assert diagnostic.message.startswith("unexpected end of text")
    assert (diagnostic.line, diagnostic.column) == (2, 15)


def test_a_load_error_after_such_a_character_has_its_line() -> None:
    """Errors found after parsing (here an unsafe variable) render the right line too."""
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources({"u.rego": 'package p\n# a\u2029b\nq if { x == "\x85" }\n'})
    diagnostic = caught.value.diagnostics[0]
    assert (diagnostic.file, diagnostic.line) == ("u.rego", 3)
    assert '\nq if { x == "\x85" }\n' in str(caught.value)


def test_yaml_files_count_lines_as_yaml_does() -> None:
    from policy_engine.source import source_lines

    assert source_lines("a\u2028b\nc", "p.iam.yaml") == ["a", "b", "c"]
    assert source_lines("a\u2028b\nc", "p.rego") == ["a\u2028b", "c"]
