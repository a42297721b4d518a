"""Every built-in, fed arbitrary policy values, returns a policy value or raises BuiltinError.

No other exception may escape: the engine turns BuiltinError into undefined
(or a strict error) and would crash on anything else.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from value_strategies import values

from policy_engine.builtins import BUILTINS, BuiltinError
from policy_engine.runtime import Ctx, EvalOptions
from policy_engine.values import UNDEFINED, type_name

# Built-ins whose output size is set by an operand; huge ranges are a memory
# problem, not a semantic one, so they get small numbers here.
_SIZE_DRIVEN = {"numbers.range"}


def _arguments(name: str) -> st.SearchStrategy[tuple[Any, ...]]:
    entry = BUILTINS[name]
    if entry.signature is not None and entry.signature.variadic:
        return st.lists(values, max_size=3).map(tuple)
    arity = entry.arity
    if name in _SIZE_DRIVEN:
        small = st.integers(min_value=-50, max_value=50) | values
        return st.tuples(*[small] * arity)
    return st.tuples(*[values] * arity)


@pytest.mark.parametrize("name", sorted(BUILTINS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_builtin_never_raises_anything_but_builtin_error(name: str, data: st.DataObject) -> None:
    args = data.draw(_arguments(name))
    if BUILTINS[name].context:  # reads the clock, seed and hooks of an evaluation
        args = (Ctx(UNDEFINED, {}, steps=1000, options=EvalOptions(seed=7, now_ns=0)), *args)
    try:
        result = BUILTINS[name].fn(*args)
    except BuiltinError as problem:
        assert problem.code in {"eval_type_error", "eval_builtin_error"}
        assert problem.message.startswith(f"{name}: ")
        return
    assert result is UNDEFINED or type_name(result)  # a policy value, never a float
    assert not isinstance(result, float)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("regex.match", ("a{99999999999}", "a"), "regex.match: error parsing regexp"),
        ("numbers.range", (0, 10**7), "more than the limit of 1000000"),
        ("numbers.range", (Decimal("1e999999999"), 1), "more than 400 digits"),
        ("rem", (Decimal("1e999999999"), 7), "more than 400 digits"),
        ("format_int", (Decimal("1e999999999"), 16), "more than 400 digits"),
        ("json.unmarshal", ("[" * 100_000,), "json.unmarshal: "),
    ],
)
def test_huge_inputs_are_refused_with_a_builtin_error(
    name: str, args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(BuiltinError) as raised:
        BUILTINS[name].fn(*args)
    assert raised.value.code == "eval_builtin_error"
    assert message in raised.value.message


def test_huge_results_stay_small() -> None:
    huge = Decimal("1e999999999")
    assert len(str(BUILTINS["plus"].fn(huge, 1))) < 1100  # rounded at 1,000 digits
    assert BUILTINS["sprintf"].fn("%99999999d", [1]) == "%!(BADWIDTH)"
    assert BUILTINS["sprintf"].fn("%.2f|%v", [huge, huge]) == "+Inf|+Inf"
    assert BUILTINS["format_int"].fn(Decimal("-255.9"), 16) == "-ff"


def test_integers_past_pythons_str_limit_still_print() -> None:
    big = 10**5000 + 1
    assert BUILTINS["sprintf"].fn("%d", [big]) == "1" + "0" * 4999 + "1"
    assert BUILTINS["sprintf"].fn("%v", [[big]]) == "[1" + "0" * 4999 + "1]"
    assert BUILTINS["json.marshal"].fn(-big) == "-1" + "0" * 4999 + "1"
    assert BUILTINS["format_int"].fn(big, 10) == "1" + "0" * 4999 + "1"
    with pytest.raises(BuiltinError, match="operand 2 must be one of"):
        BUILTINS["format_int"].fn(5, Decimal("1e999999999"))
    assert BUILTINS["json.unmarshal"].fn(str(10**400)) == Decimal(10**400)
    assert BUILTINS["json.unmarshal"].fn("1" + "0" * 5000) == Decimal("1e5000")


_VERBS = st.sampled_from(list("vdsqxXobcTeEfFgG%"))
_FLAGS = st.text(alphabet="+-# 0", max_size=2)


@settings(max_examples=150, deadline=None)
@given(
    verbs=st.lists(st.tuples(_FLAGS, st.integers(0, 12) | st.none(), _VERBS), max_size=3),
    args=st.lists(values | st.integers(-(2**70), 2**70) | st.integers(-5, 0x110005), max_size=3),
)
def test_sprintf_answers_every_verb_on_every_value(
    verbs: list[tuple[str, int | None, str]], args: list[Any]
) -> None:
    # %q of -1 and of a *big.Int once escaped as ValueError / OverflowError (issue 18).
    template = "".join(
        f"%{flags}{'' if precision is None else f'.{precision}'}{verb}"
        for flags, precision, verb in verbs
    )
    try:
        result = BUILTINS["sprintf"].fn(template, tuple(args))
    except BuiltinError:
        return
    assert isinstance(result, str)
