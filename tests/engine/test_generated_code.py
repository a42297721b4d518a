"""Generated evaluators answer exactly as the closure form does.

The tracing engine keeps every clause, loop and rule behind closures (and never
inlines constant rules), so it is the reference: every rule below is evaluated
on both, for many inputs, in normal and strict mode and under a small step
limit, and the values or errors must be the same.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine import Engine, EngineConfig, EvalError
from policy_engine.codegen import inline_body, open_test
from policy_engine.compile_rules import glob_alternation, glob_dispatch
from policy_engine.runtime import MISSING, Ctx, EvalOptions
from policy_engine.tooling.trace import traced_engine

POLICY = """package g

import rego.v1

globs := ["gpt-4", "gpt-4o*", "claude-?-*", "{a,b}x", "[m-n]ock*"]

bad_globs := ["gpt-*", "[unclosed"]

names := {"chat", "embed"}

glob_allowed if {
	some pattern in globs
	glob.match(pattern, null, input.m)
}

glob_with_bad if {
	some pattern in bad_globs
	glob.match(pattern, null, input.m)
}

glob_from_input if {
	some pattern in input.globs
	glob.match(pattern, null, input.m)
}

guarded_loop if {
	input.flag == true
	some x in input.xs
	x == 3
}

first_big := x if {
	some x in input.xs
	x > 1
}

key_of_b := i if {
	some i, x in input.xs
	x == "b"
}

loop_then_rule if {
	some x in input.xs
	x == input.want
	not blocked
}

blocked if input.blocked

negated if not blocked

conflicting := 1 if input.c1

conflicting := 2 if input.c2

default defaulted := "none"

defaulted := "one" if input.c1

defaulted := "two" if input.c2

default only_default := 5

chain := "a" if input.k == "a"
else := "b" if {
	input.k == "b"
	not blocked
}
else := input.k

in_constant if input.s in names

in_input := input.s in input.coll

to_num := to_number(input.n)

below if to_number(input.n) < to_number(input.limit)

text_tests := [contains(input.s, "a"), startswith(input.s, "c"), endswith(input.s, "t")]

cased := [lower(input.s), upper(input.s)]

parts := split(input.s, input.sep)

shaped := {"s": input.s, "chain": chain, "model": input.m}

static_ok if count(globs) > 2

conflict_free if conflicting

uses_rules if {
	static_ok
	not blocked
	conflict_free
}

deep if uses_rules

exact_names := ["gpt-4", "claude-3", "1", "true", "null"]

scalar_members := ["a", 1, null, 12345678901234567890]

bool_members := [true, "a", false]

number_members := [1.5, 2.0, 3]

structured_members := [["a"], {"k": 1}, {"s"}, [true]]

set_members := {"chat", "embed", 3}

name_exact if {
	some n in exact_names
	n == input.m
}

name_exact_flipped if {
	some n in exact_names
	input.m == n
}

name_unified if {
	some n in exact_names
	n = input.m
}

name_unified_flipped := "found" if {
	some n in exact_names
	input.m = n
}

scalar_member if {
	some n in scalar_members
	n == input.m
}

bool_member if {
	some n in bool_members
	n == input.m
}

number_member if {
	some n in number_members
	input.m == n
}

structured_member if {
	some n in structured_members
	n == input.m
}

set_member if {
	some n in set_members
	input.m = n
}

guarded_member if {
	input.flag == true
	some n in scalar_members
	n == input.m
}

member_of_var if {
	wanted := input.m
	some n in exact_names
	wanted == n
}

member_is_const if {
	some n in scalar_members
	n == 1
}

member_is_itself if {
	some n in exact_names
	n == n
}

deeper := "yes" if deep
else := defaulted

doubled := [x * 2 | some x in input.xs]

keyed_pairs := [[k, x] | some k, x in input.xs]

picked := {x | some x in input.xs; x != "b"}

guarded_compr := [x | input.flag == true; some x in input.xs; x > 1]

undefined_heads := [input.ys[x] | some x in input.xs]

names_starting := {n | some n in exact_names; startswith(n, input.s)}

bound_after := [[x, y] | some x in input.xs; y := concat("-", [input.s, "x"])]

nested_compr := [count([y | some y in input.xs; y != x]) | some x in input.xs]

assigned := [y, z, w] if {
	y := input.m
	z := chain
	w := [y, input.k]
	input.flag
	w
}

assigned_call := z if {
	z := lower(input.s)
	z != "chat"
}

double(x) := x * 2

pair(a, b) := [a, b] if a != b

called := [double(input.n), pair(input.m, input.k)]

called_in_loop := [pair(x, input.m) | some x in input.xs]

field_of(w) := w.k

deep_field_of(w) := w.k.j

first_of(w) := w[0]

has_field(w) if w.k != null

arg_fields := [field_of(input.m), deep_field_of(input.m), first_of(input.xs), field_of(input.xs)]

arg_field := field_of(input.m)

arg_deep_field := deep_field_of(input.m)

arg_first := first_of(input.xs)

arg_tested if has_field(input.m)

var_fields := [v.k, v[1], v.k.j] if {
	v := input.m
}

var_field := v.k.j if {
	v := input.m
}

deep_input := input.m.k.j

deep_null if input.m.k.j == null

deep_text if input.m.k == "text"

deep_set if input.m.k.j != null

digits if regex.match("^[0-9]+$", input.s)

digits_value := regex.match("^[0-9]+$", input.s)

pattern_from_input if regex.match(input.sep, input.s)

under_limit if to_number(input.n) < input.limit

at_least_one if to_number(input.n) >= 1

text_before if input.s < input.k

tests_in_a_row := "all" if {
	input.n > 2
	input.m == "a"
	input.k != input.m
	input.s in input.coll
	startswith(input.s, "c")
}
else := "numbers" if {
	to_number(input.n) >= 1
	not blocked
	input.m < input.k
}
else := "none"

tested_count if {
	count(input.xs) > 1
	input.flag == true
}

tested_with if {
	input.s == "chat"
	blocked with input.blocked as true
	input.k != "b"
}
"""

RULES = [
    "glob_allowed", "glob_with_bad", "glob_from_input", "guarded_loop", "first_big",
    "key_of_b", "loop_then_rule", "blocked", "negated", "conflicting", "defaulted",
    "only_default", "chain", "in_constant", "in_input", "to_num", "below", "text_tests",
    "cased", "parts", "shaped", "static_ok", "conflict_free", "uses_rules", "deep", "deeper",
    "name_exact", "name_exact_flipped", "name_unified", "name_unified_flipped", "scalar_member",
    "bool_member", "number_member", "structured_member", "set_member", "guarded_member",
    "member_of_var", "member_is_const", "member_is_itself", "doubled", "keyed_pairs", "picked",
    "guarded_compr", "undefined_heads", "names_starting", "bound_after", "nested_compr",
    "assigned", "assigned_call", "called", "called_in_loop", "arg_fields", "arg_field",
    "arg_deep_field", "arg_first", "arg_tested", "var_fields", "var_field", "deep_input",
    "deep_null", "deep_text", "deep_set", "digits", "digits_value", "pattern_from_input",
    "under_limit", "at_least_one", "text_before", "tests_in_a_row", "tested_count",
    "tested_with",
]  # fmt: skip

INPUTS: list[Any] = [
    {},
    {"m": "gpt-4"},
    {"m": "gpt-4o-mini", "globs": ["x*", "gpt-4o*"]},
    {"m": "claude-3-opus", "globs": ["[bad"]},
    {"m": "bx", "globs": "not a list"},
    {"m": "mock-model", "globs": [1, "mock*"]},
    {"m": "gpt-5", "globs": []},
    {"m": 42, "globs": ["*"]},
    {"m": None},
    {"m": "claude-3"},
    {"m": "null"},
    {"m": True},
    {"m": False},
    {"m": 1},
    {"m": 0},
    {"m": 1.0},
    {"m": Decimal("1.0")},
    {"m": Decimal("2")},
    {"m": 2.0},
    {"m": 3},
    {"m": 12345678901234567890},
    {"m": "a", "flag": True},
    {"m": None, "flag": True},
    {"m": ["a"]},
    {"m": [True]},
    {"m": [1]},
    {"m": {"k": 1}},
    {"m": {"k": True}},
    {"m": ["s"]},
    {"m": "embed"},
    {"flag": True, "xs": [1, 2, 3]},
    {"flag": False, "xs": [3]},
    {"xs": [0, 2, 2], "want": 2},
    {"xs": [0, 2, 5], "want": 5, "blocked": True},
    {"xs": ["a", "b", "c"], "want": "c"},
    {"xs": {"k": "b", "j": "a"}, "want": "a"},
    {"xs": ["b", "b"]},
    {"xs": 7},
    {"c1": True},
    {"c2": True},
    {"c1": True, "c2": True},
    {"k": "a"},
    {"k": "b"},
    {"k": "b", "blocked": True},
    {"k": 3},
    {"s": "chat", "coll": ["chat"], "sep": "a"},
    {"s": "embed", "coll": {"x": "embed"}, "sep": ""},
    {"s": "cat", "coll": ["dog"], "sep": "/"},
    {"s": 1, "coll": [1.0, 2], "sep": "a"},
    {"s": ["chat"], "coll": [["chat"]]},
    {"s": "x", "coll": "x", "sep": 1},
    {"n": "250.50", "limit": "1000.00"},
    {"n": "1000.00", "limit": "1000"},
    {"n": "12abc", "limit": "1"},
    {"n": 3, "limit": True},
    {"n": None, "limit": "0.5"},
    {"n": [1], "limit": 2},
    {"xs": {"b": 1, "a": 2}, "ys": {"1": "one"}, "flag": True, "s": "g"},
    {"xs": {"c": "b", "a": 2}, "ys": ["zero", "one"], "flag": True, "s": "c"},
    {"xs": ["a", 2, None], "ys": {"a": 0}, "flag": True, "s": 3},
    {"xs": None, "flag": True},
    {"xs": "abc", "flag": True, "s": "n"},
    {"xs": [3, 1, 2], "ys": [9, 8, 7, 6], "flag": False},
    {"n": 4, "m": "a", "k": "b", "xs": ["a", "c"]},
    {"n": "4", "m": 1, "k": 1, "xs": [1, True]},
    {"m": {"k": {"j": 1}}, "xs": {"k": 2, "0": 3}},
    {"m": {"k": None, "1": "one"}, "xs": [[1], 2]},
    {"m": {"k": {"j": None}}, "xs": []},
    {"m": {"k": ["j"]}, "xs": ("t", "u")},
    {"m": {"k": "text"}, "xs": "text"},
    {"m": {"k": {}}, "s": "123", "sep": "^1", "k": "2"},
    {"m": {"k": {"j": "text"}}, "s": "12a", "sep": "[", "k": "12"},
    {"m": {"j": 1}, "s": "b", "k": "a", "n": "0.5", "limit": 1},
    {"s": 123, "sep": "1", "k": 5, "n": 2, "limit": Decimal("2.5")},
    {"n": 3, "m": "a", "k": "b", "s": "chat", "coll": ["chat"]},
    {"n": 3, "m": "a", "k": "a", "s": "chat", "coll": ["chat"]},
    {"n": Decimal("2.5"), "m": "a", "k": "b", "s": "cat", "coll": {"x": "cat"}},
    {"n": "3", "m": "a", "k": "b", "s": "chat", "coll": ["chat"]},
    {"n": "3", "m": "a", "k": "b", "blocked": True},
    {"n": "x", "m": "a", "k": "b"},
    {"n": 3, "m": "a", "k": "b", "s": 5, "coll": [5]},
    {"xs": [1, 2], "flag": True, "s": "chat", "k": "a"},
    {"xs": 5, "flag": True, "s": "chat", "k": "b"},
]


def outcome(engine: Engine, rule: str, doc: Any, package: str = "g") -> Any:
    try:
        return ("value", engine.prepare(f"data.{package}.{rule}")(doc))
    except EvalError as exc:
        return ("error", exc.code, exc.message)


@pytest.mark.parametrize("config", [EngineConfig(), EngineConfig(strict=True)], ids=["", "strict"])
def test_generated_code_matches_closures(config: EngineConfig) -> None:
    fast = Engine.from_sources({"g.rego": POLICY}, config=config)
    reference, _tracer = traced_engine({"g.rego": POLICY}, config=config)
    for doc in INPUTS:
        for rule in RULES:
            assert outcome(fast, rule, doc) == outcome(reference, rule, doc), (rule, doc)


def test_glob_allow_list_answers() -> None:
    engine = Engine.from_sources({"g.rego": POLICY})
    allowed = engine.prepare("data.g.glob_allowed")
    assert allowed({"m": "gpt-4o-mini"}) is True
    assert allowed({"m": "claude-3-opus"}) is True
    assert allowed({"m": "bx"}) is True
    assert allowed({"m": "nock"}) is True
    assert allowed({"m": "gpt-4-turbo"}) is not True
    assert allowed({"m": "claude-3"}) is not True


def test_glob_allow_list_is_charged_to_the_step_limit() -> None:
    globs = ", ".join(f'"m{i}*"' for i in range(50))
    policy = (
        f"package s\nimport rego.v1\nglobs := [{globs}]\n"
        "ok if {\n\tsome p in globs\n\tglob.match(p, null, input.m)\n}\n"
    )
    engine = Engine.from_sources({"s.rego": policy}, config=EngineConfig(max_steps=20))
    with pytest.raises(EvalError) as caught:
        engine.prepare("data.s.ok")({"m": "m1"})
    assert caught.value.code == "eval_limit_error"
    assert Engine.from_sources({"s.rego": policy}).prepare("data.s.ok")({"m": "m49x"}) is True


def test_exact_allow_list_answers_and_is_charged_like_the_loop() -> None:
    names = ", ".join(f'"m{i}"' for i in range(50))
    policy = (
        f"package s\nimport rego.v1\nnames := [{names}, 7, null]\n"
        "ok if {\n\tsome n in names\n\tn == input.m\n}\n"
    )
    allowed = Engine.from_sources({"s.rego": policy}).prepare("data.s.ok")
    assert allowed({"m": "m49"}) is True
    assert allowed({"m": 7}) is True
    assert allowed({"m": Decimal("7.0")}) is True
    assert allowed({"m": None}) is True
    assert allowed({"m": "m50"}) is not True
    assert allowed({"m": True}) is not True
    for limit in (20, 51, 52, 53, 60):
        config = EngineConfig(max_steps=limit)
        fast = Engine.from_sources({"s.rego": policy}, config=config)
        reference, _tracer = traced_engine({"s.rego": policy}, config=config)
        for doc in ({"m": "m0"}, {"m": "m49"}, {"m": "x"}, {"m": 7}, {}):
            expected = outcome(reference, "ok", doc, "s")
            assert outcome(fast, "ok", doc, "s") == expected, (limit, doc)
    limited = Engine.from_sources({"s.rego": policy}, config=EngineConfig(max_steps=20))
    with pytest.raises(EvalError) as caught:
        limited.prepare("data.s.ok")({"m": "m0"})
    assert caught.value.code == "eval_limit_error"


def test_comprehension_loops_are_generated_and_charged_like_the_closures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from policy_engine.compile_rules import RuleSourceCompiler

    made: list[Any] = []
    original = RuleSourceCompiler.comprehension_loop

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        looped = original(self, *args, **kwargs)
        made.append(looped)
        return looped

    monkeypatch.setattr(RuleSourceCompiler, "comprehension_loop", counted)
    rules = ["doubled", "picked", "guarded_compr", "names_starting", "nested_compr"]
    Engine.from_sources({"g.rego": POLICY})
    assert len([m for m in made if m is not None]) >= len(rules)
    docs = [{"xs": list(range(n)), "flag": True, "s": "g"} for n in (0, 3, 9)]
    for limit in (3, 5, 8, 12, 30):
        config = EngineConfig(max_steps=limit)
        fast = Engine.from_sources({"g.rego": POLICY}, config=config)
        reference, _tracer = traced_engine({"g.rego": POLICY}, config=config)
        for doc in docs:
            for rule in rules:
                assert outcome(fast, rule, doc) == outcome(reference, rule, doc), (limit, rule)


def test_loop_conflict_is_reported() -> None:
    engine = Engine.from_sources({"g.rego": POLICY})
    with pytest.raises(EvalError) as caught:
        engine.prepare("data.g.first_big")({"xs": [2, 3]})
    assert caught.value.code == "eval_conflict_error"
    assert engine.prepare("data.g.first_big")({"xs": [0, 3, 3]}) == 3


def test_inline_body_renames_and_refuses_what_it_cannot_inline() -> None:
    source = (
        "def call(ctx, f):\n    x0 = a0(ctx, f)\n    if x0 is U:\n        return False\n"
        "    return x0.real > c1\n"
    )
    into: dict[str, Any] = {}
    lines = inline_body(source, {"a0": abs, "c1": 2, "U": None}, "p_", "g", "out", into, {})
    assert lines == [
        "while True:",
        "    p_x0 = p_a0(ctx, g)",
        "    if p_x0 is U:",
        "        out = False",
        "        break",
        "    out = p_x0.real > p_c1",
        "    break",
        "    break",
    ]
    assert into == {"p_a0": abs, "p_c1": 2, "U": None}
    looping = "def call(ctx, f):\n    for x in f:\n        return x\n    return U\n"
    assert inline_body(looping, {}, "p_", "f", "out", {}, {}) is None
    one_line = "def call(ctx, f):\n    if f: return U\n    return M\n"
    assert inline_body(one_line, {}, "p_", "f", "out", {}, {}) is None


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.text(alphabet="ab*?[]{},\\-", max_size=5), min_size=1, max_size=6),
    text=st.text(alphabet="ab-c", max_size=5),
)
def test_glob_dispatch_by_first_character_answers_as_the_alternation(
    patterns: list[str], text: str
) -> None:
    whole = glob_alternation(tuple(patterns))
    split = glob_dispatch(tuple(patterns))
    assert (whole is None) == (split is None)
    if whole is None or split is None:
        return
    by_first, others = split
    matcher = by_first.get(text[:1], others)
    assert (matcher is not None and matcher(text) is not None) == (whole(text) is not None)


@pytest.mark.parametrize("shared", [None, [MISSING, "kept", MISSING]])
def test_fresh_context_is_the_class_call(shared: list[Any] | None) -> None:
    options = EvalOptions(now_ns=5)
    blank = [MISSING] * 4
    made = Ctx.fresh({"a": 1}, {"d": 2}, 99, True, shared, options, blank)
    called = Ctx({"a": 1}, {"d": 2}, 99, True, None, shared, options, rules=3)
    for slot in Ctx.__slots__:
        assert getattr(made, slot) == getattr(called, slot), slot
    assert made.cache is not called.cache
    assert made.cache is not blank
    assert (made.shared is made.cache) == (shared is None)


MEMBER_COMPREHENSIONS = """package m

import rego.v1

values_set := {x | some x in input.c}
values_array := [x | some x in input.c]
keys_set := {k | some k, _ in input.c}
keys_array := [k | some k, _ in input.c]
counted := count([x | some x in input.c])
"""

_members = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=2),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        _members,
        st.lists(_members, max_size=5),
        st.dictionaries(st.text(max_size=2), _members, max_size=5),
    )
)
def test_member_comprehensions_answer_as_the_loop(collection: Any) -> None:
    """`[x | some x in xs]` and the like run in one pass; the tracing compiler still loops."""
    fast = _member_engines[0]
    reference = _member_engines[1]
    for rule in ("values_set", "values_array", "keys_set", "keys_array", "counted"):
        doc = {"c": collection}
        assert outcome(fast, rule, doc, "m") == outcome(reference, rule, doc, "m"), rule


_member_engines = (
    Engine.from_sources({"m.rego": MEMBER_COMPREHENSIONS}),
    traced_engine({"m.rego": MEMBER_COMPREHENSIONS})[0],
)


def test_member_comprehensions_are_charged_to_the_step_limit() -> None:
    limited = Engine.from_sources(
        {"m.rego": MEMBER_COMPREHENSIONS}, config=EngineConfig(max_steps=20)
    )
    with pytest.raises(EvalError):
        limited.prepare("data.m.values_set")({"c": list(range(50))})
    assert limited.prepare("data.m.values_set")({"c": [1, 2]}) == frozenset({1, 2})


def test_inlined_tests_need_no_flag() -> None:
    """An inlined test whose early exits all fail leaves its loop open: the rest of the
    clause runs inside it under the test's last condition, and no flag is set or read."""
    source = (
        "def call(ctx, f):\n    x0 = a0(ctx, f)\n    if x0 is U:\n        return False\n"
        "    return x0.real > c1\n"
    )
    lines = inline_body(source, {"a0": abs, "c1": 2, "U": None}, "p_", "g", "out", {}, {})
    assert lines is not None
    assert open_test(lines, "out") == (
        ["while True:", "    p_x0 = p_a0(ctx, g)", "    if p_x0 is U:", "        break"],
        "p_x0.real > p_c1",
    )
    # An early exit that may hold needs the flag.
    early = "def call(ctx, f):\n    if type(f) is int:\n        return f > 1\n    return a0(f)\n"
    lines = inline_body(early, {"a0": abs}, "p_", "f", "out", {}, {})
    assert lines is not None
    assert open_test(lines, "out") is None


def test_clauses_of_inlined_tests_set_no_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules of a clause of comparisons, equalities, membership and built-ins (which
    may fail) are generated without flags, and answer as the closures do."""
    import policy_engine.compile_rules

    sources: list[str] = []
    generate = policy_engine.compile_rules.generate

    def recording(source: str, env: dict[str, Any], cache: dict[str, Any]) -> Any:
        sources.append(source)
        return generate(source, env, cache)

    monkeypatch.setattr(policy_engine.compile_rules, "generate", recording)
    engine = Engine.from_sources({"g.rego": POLICY})
    chains = [s for s in sources if "while True:" in s]
    assert len(chains) > 10
    flags = re.compile(r"^ +\w+p\d+ = ", re.MULTILINE)
    assert [line for s in chains for line in flags.findall(s)] == []
    assert engine.prepare("data.g.tests_in_a_row")({"n": "3", "m": "a", "k": "b"}) == "numbers"
    assert engine.prepare("data.g.tested_count")({"xs": [1, 2], "flag": True}) is True
    strict = Engine.from_sources({"g.rego": POLICY}, config=EngineConfig(strict=True))
    with pytest.raises(EvalError):
        strict.prepare("data.g.tested_count")({"xs": 5, "flag": True})


def test_generated_functions_keep_their_own_code() -> None:
    """One template is compiled once, but every function made from it gets its own code
    object: CPython keeps what it specialised (a global's slot, a call's target) in the
    code object, and rules sharing one would keep undoing each other's specialisations."""
    from policy_engine.codegen import generate

    cache: dict[str, Any] = {}
    source = "def get(ctx, _frame=None):\n    return x\n"
    first = generate(source, {"x": 1}, cache)
    second = generate(source, {"x": 2}, cache)
    assert len(cache) == 1
    assert first.__code__ is not second.__code__
    assert first.__code__ is not cache[source]
    assert (first(None), second(None)) == (1, 2)
