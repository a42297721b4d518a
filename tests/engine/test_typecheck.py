"""The type checker (issue 18 point 2): OPA's `rego_type_error`s at load, never a false one.

Every rejected example below is rejected by OPA too (checked with OPA's engine,
`opa-golib-python-bindings`, when the cases were written); every accepted one
loads in OPA.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_engine import Engine, PolicyError
from policy_engine.errors import TYPE_ERROR

REPO = Path(__file__).resolve().parents[2]


def load_error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        Engine.from_sources({"p.rego": "package p\n\n" + text + "\n"})
    return caught.value


REJECTED = {
    # issue 18's examples
    "count of a number": ("r := count(1)", 3, 12, "count: invalid argument(s)"),
    "set indexed by null": ("r if { {3.0}[null] }", 3, 14, "undefined ref: {…}[null]"),
    # built-in arguments, operators and bound variables
    "string plus number": ('r := x if { x := "a" + 1 }', 3, 18, "+: invalid argument(s)"),
    "variable of the wrong type": ("r if { x := 1; count(x) }", 3, 22, "count: invalid"),
    # references into rules and literals
    "index into a string rule": ('q := "abc"\nr if { q[0] }', 4, 10, "undefined ref: q[0]"),
    "missing key of an object rule": ('q := {"a": 1}\nr if { q.b }', 4, 10, "no field `b`"),
    "string key into an array": ("r if { x := [1]; x.foo }", 3, 20, "undefined ref: x.foo"),
    "data path into a set rule": (
        "s contains 1\nr if { data.p.s.x }",
        4,
        17,
        "undefined ref: data.p.s.x",
    ),
    "function result": ('f(x) := "s"\nr := f(1) + 1', 4, 6, "+: invalid argument(s)"),
    "comprehension result": ("r := count([x | x := 1][0])", 3, 12, "count: invalid"),
    "match error": ('r if { x := [1]; x = "a" }', 3, 18, "match error"),
    "a statement == is a unification": ('r if { x := "a"; x == 1 }', 3, 18, "match error"),
    "in a comprehension too": ('r if { [x | some x in ["a"]; x == 1] }', 3, 30, "match error"),
    "a key the dynamic part holds": (
        'r if { x := {k: 1 | k := "a"}; x == {"b": "s"} }',
        3,
        32,
        "match error",
    ),
    "objects without a dynamic part": ('r if { {"a": 1, "b": 2} == {"a": 1} }', 3, 8, "match"),
    "a rule reached only from an every body": (
        "r if { every x in [1] { q > x } }\nq := count(1)",
        4,
        12,
        "count: invalid",
    ),
}


@pytest.mark.parametrize(("text", "line", "column", "message"), REJECTED.values(), ids=REJECTED)
def test_ill_typed_policies_are_rejected_where_the_mistake_is(
    text: str, line: int, column: int, message: str
) -> None:
    error = load_error(text)
    assert error.code == TYPE_ERROR
    first = error.diagnostics[0]
    assert (first.file, first.line, first.column) == ("p.rego", line, column), error
    assert message in first.message
    rendered = error.render().splitlines()
    assert rendered[0].startswith(f"p.rego:{line}:{column}: rego_type_error: ")
    assert rendered[-1].strip() == "^" and len(rendered[-1]) == column


ACCEPTED = {
    "unknown input": "r if { input.a.b[0] + 1 > count(input.c) }",
    "comparisons take any types": 'r if { 1 < "a"; 1 != "a" }',
    "== inside a value is a call": 'r := "b" == null',
    "== with a side still unbound": "r if { x == 1; x = input.a }",
    "variable used before its binding": "r if { count(x) > 0; x = [1] }",
    "with replaces a function": ('f(_) := 1\nr if { f(1) + 1 == 2 with f as g }\ng(_) := "s"'),
    "with replaces input": "r if { count(input.x) == 1 with input.x as [1] }",
    "union result": 'q := 1 if input.a\nq := "s" if not input.a\nr := count(q)',
    "every over a number": "r if { every v in 1 { v > 0 } }",
    "every bodies are not checked": 'r if { every x in ["a"] { x % 2 == 0 } }',
    "data outside the rules": "r if { data.catalog.models[m].x == 1; m != 2 }",
    "object key type": 'r := {k: v | some k, v in {"a": 1}; k == "a"}',
    "set membership": 'r if { "a" in {"a", "b"} }',
    "rule name shadowed by a local": "q := 1\nr if { q := [1]; q[0] }",
    "ref head rule path": "a.b.c := 1\nr if { a.b.c + 1 }",
    "partial object": 'o[k] := 1 if { some k in ["x"] }\nr if { o.x + 1 }',
    # The fuzzer's seed 31 case 1554: OPA does not constrain a key that an object's
    # dynamic part cannot hold (number keys here, a string key there), whatever its value.
    "a key the dynamic part cannot hold": (
        'r if { {v5: input.flag | some v5, v4 in ["0x1F"]} == {" a ": true} }'
    ),
    "either side": 'r if { {"a": 1} == {k: true | k := 1} }',
    "through a variable": 'r if { x := {k: true | k := 1}; x == {"a": true, "b": 2} }',
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED)
def test_well_typed_or_uncertain_policies_load(text: str) -> None:
    Engine.from_sources({"p.rego": "package p\n\n" + text + "\n"})


def test_one_mistake_in_a_rule_is_reported_once() -> None:
    error = load_error("q := count(1)\nr := q + 1\ns := q.x")
    assert [d.line for d in error.diagnostics] == [3]
