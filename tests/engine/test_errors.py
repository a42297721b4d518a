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
