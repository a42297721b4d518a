"""Arithmetic operators, number built-ins and aggregates: exact decimals, OPA's errors."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_engine.builtins import BUILTINS, BuiltinError
from policy_engine.values import UNDEFINED, equal

D = Decimal


def call(name: str, *args: object) -> Any:
    return BUILTINS[name].fn(*args)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("plus", (D("0.1"), D("0.2")), D("0.3")),
        ("plus", (2**63 - 1, 1), 2**63),
        ("plus", (D("10.00"), 5), 15),
        ("minus", (D("0.3"), D("0.1")), D("0.2")),
        ("minus", (frozenset({1, 2}), frozenset({2})), frozenset({1})),
        ("mul", (D("19.99"), 3), D("59.97")),
        ("mul", (2147483647, 2147483647), 4611686014132420609),
        ("div", (6, 3), 2),
        ("div", (1, 4), D("0.25")),
        ("div", (D("30.00"), 1000000), D("0.00003")),
        ("rem", (-17, 5), -2),
        ("rem", (17, -5), 2),
        ("rem", (D("4.0"), 3), 1),
        ("and", (frozenset({1, 2}), frozenset({2, 3})), frozenset({2})),
        ("or", (frozenset({1}), frozenset({2})), frozenset({1, 2})),
        ("abs", (-5,), 5),
        ("abs", (D("-2.5"),), D("2.5")),
        ("round", (D("2.5"),), 3),
        ("round", (D("-2.5"),), -3),
        ("round", (D("2.4"),), 2),
        ("ceil", (D("1.1"),), 2),
        ("ceil", (D("-1.1"),), -1),
        ("floor", (D("-1.1"),), -2),
        ("floor", (7,), 7),
        ("numbers.range", (1, 4), (1, 2, 3, 4)),
        ("numbers.range", (3, 1), (3, 2, 1)),
        ("numbers.range", (2, 2), (2,)),
        ("to_number", ("1000.00",), 1000),
        ("to_number", ("-0.5",), D("-0.5")),
        ("to_number", ("1e3",), 1000),
        ("to_number", (None,), 0),
        ("to_number", (True,), 1),
        ("to_number", (D("2.5"),), D("2.5")),
        ("format_int", (255, 16), "ff"),
        ("format_int", (D("-3.7"), 10), "-3"),
        ("format_int", (5, 2), "101"),
        ("format_int", (8, 8), "10"),
        ("count", ((1, 2, 3),), 3),
        ("count", ("héllo",), 5),
        ("count", ({"a": 1},), 1),
        ("count", (frozenset(),), 0),
        ("sum", ([D("0.1"), D("0.2"), 1],), D("1.3")),
        ("sum", (frozenset(),), 0),
        ("product", ((2, D("1.5")),), 3),
        ("max", ((3, D("3.5"), D("3.25")),), D("3.5")),
        ("min", (frozenset({"b", "a"}),), "a"),
        ("sort", ([3, "a", None, 1],), (None, 1, 3, "a")),
        ("sort", (frozenset({2, 1}),), (1, 2)),
    ],
)
def test_numeric_builtin(name: str, args: tuple[object, ...], expected: object) -> None:
    result = call(name, *args)
    assert equal(result, expected), result
    assert not isinstance(result, float)


@pytest.mark.parametrize(
    ("name", "args"),
    [("max", ((),)), ("min", (frozenset(),))],
)
def test_max_and_min_of_nothing_are_undefined(name: str, args: tuple[object, ...]) -> None:
    assert call(name, *args) is UNDEFINED


def test_comparison_operators_use_the_rego_order() -> None:
    assert call("lt", 1, D("1.5")) is True
    assert call("lte", D("1.0"), 1) is True
    assert call("gt", "a", 99) is True
    assert call("gte", None, False) is False
    assert call("equal", D("3.50"), D("3.5")) is True
    assert call("equal", True, 1) is False
    assert call("neq", (1,), [1]) is False


def test_results_are_ints_when_integral() -> None:
    assert type(call("plus", D("0.5"), D("0.5"))) is int
    assert type(call("div", D("3.0"), D("1.5"))) is int


@pytest.mark.parametrize(
    ("name", "args", "code", "message"),
    [
        ("plus", ("1", 1), "eval_type_error", "plus: operand 1 must be number but got string"),
        ("mul", (1, None), "eval_type_error", "mul: operand 2 must be number but got null"),
        ("minus", (frozenset({1}), 1), "eval_type_error", "operand 2 must be set but got number"),
        ("minus", (1, frozenset({1})), "eval_type_error", "operand 2 must be number but got set"),
        ("minus", ("a", 1), "eval_type_error", "operand 1 must be one of {number, set}"),
        ("and", (1, frozenset()), "eval_type_error", "and: operand 1 must be set"),
        ("div", (1, 0), "eval_builtin_error", "div: divide by zero"),
        ("div", (1, D("0.0")), "eval_builtin_error", "div: divide by zero"),
        ("rem", (1, 0), "eval_builtin_error", "modulo by zero"),
        ("rem", (D("1.5"), 1), "eval_builtin_error", "modulo on floating-point number"),
        ("to_number", ("broken",), "eval_builtin_error", "invalid syntax"),
        ("to_number", ("",), "eval_builtin_error", "invalid syntax"),
        ("to_number", ([1],), "eval_type_error", "got array"),
        ("format_int", (1, 3), "eval_type_error", "{2, 8, 10, 16}"),
        ("numbers.range", (D("1.5"), 3), "eval_type_error", "must be integer"),
        ("count", (1,), "eval_type_error", "count: operand 1 must be one of"),
        ("sum", ([1, "2"],), "eval_type_error", "containing string"),
        ("max", ("abc",), "eval_type_error", "max: operand 1 must be one of {array, set}"),
        ("abs", ("1",), "eval_type_error", "abs: operand 1 must be number"),
    ],
)
def test_numeric_errors(name: str, args: tuple[object, ...], code: str, message: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call(name, *args)
    assert raised.value.code == code
    assert message in raised.value.message


def test_stray_floats_from_input_are_read_exactly() -> None:
    assert equal(call("plus", 0.1, 0.2), D("0.3"))
    assert equal(call("sum", [0.1, 0.2]), D("0.3"))


# ---------------------------------------------------------------- properties

money = st.decimals(
    min_value=D("-1e12"), max_value=D("1e12"), allow_nan=False, allow_infinity=False, places=6
)
any_number = st.integers(min_value=-(10**18), max_value=10**18) | money


@given(any_number, any_number)
def test_plus_minus_mul_are_exact(a: Decimal | int, b: Decimal | int) -> None:
    exact_a, exact_b = Fraction(a), Fraction(b)
    assert Fraction(call("plus", a, b)) == exact_a + exact_b
    assert Fraction(call("minus", a, b)) == exact_a - exact_b
    assert Fraction(call("mul", a, b)) == exact_a * exact_b


@given(any_number, any_number)
def test_div_is_exact_to_34_significant_digits(a: Decimal | int, b: Decimal | int) -> None:
    if b == 0:
        return
    quotient = Fraction(call("div", a, b))
    exact = Fraction(a) / Fraction(b)
    assert abs(quotient - exact) <= abs(exact) * Fraction(1, 10**33)


@given(any_number)
def test_integral_results_are_ints(a: Decimal | int) -> None:
    for result in (call("plus", a, 0), call("round", a), call("floor", a), call("ceil", a)):
        if result == int(result):
            assert type(result) is int


@given(st.integers(), st.integers())
def test_rem_matches_go_truncated_modulo(a: int, b: int) -> None:
    if b == 0:
        return
    result = call("rem", a, b)
    assert a == b * int(Fraction(a, b)) + result  # Go truncates the quotient toward zero
    assert result == 0 or (result < 0) == (a < 0)


def test_no_result_is_rounded_by_the_threads_28_digit_context() -> None:
    long = D("-1.234567890123456789012345678901234")  # 34 significant digits
    assert call("abs", long) == long.copy_negate()  # not `-long`: that rounds too
    assert call("plus", long, 0) == long
    assert call("round", D("0.5000000000000000000000000000000001")) == 1
    assert call("sprintf", "%v", [long]) == "-1.234567890123456789012345678901234"
    assert call("sprintf", "%.33f", [long]) == "-1.234567890123456789012345678901234"
