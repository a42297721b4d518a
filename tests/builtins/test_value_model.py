"""The value model: equality, order, freezing, JSON text (policy_engine.values)."""

from __future__ import annotations

import itertools
import json
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from value_strategies import json_values, values

from policy_engine.builtins import BUILTINS
from policy_engine.values import (
    UNDEFINED,
    FrozenDict,
    compare,
    equal,
    freeze,
    from_json,
    normalize_number,
    sort_key,
    thaw,
    to_json_text,
    to_json_value,
    type_name,
)


def test_undefined_is_a_falsy_singleton_with_a_readable_repr() -> None:
    assert repr(UNDEFINED) == "UNDEFINED"
    assert not UNDEFINED
    assert type(UNDEFINED)() is UNDEFINED
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED


def test_frozen_dict_is_hashable_immutable_and_equal_to_dict() -> None:
    frozen = FrozenDict({"a": 1, "b": (2,)})
    assert frozen == {"a": 1, "b": (2,)}
    assert hash(frozen) == hash(FrozenDict({"b": (2,), "a": 1}))
    assert {frozen: "x"}[FrozenDict({"a": 1, "b": (2,)})] == "x"
    with pytest.raises(TypeError):
        frozen["c"] = 3
    with pytest.raises(TypeError):
        frozen.update({"c": 3})
    assert pickle.loads(pickle.dumps(frozen)) == frozen


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (True, 1, False),
        (False, 0, False),
        (1, Decimal("1.0"), True),
        (Decimal("3.50"), Decimal("3.5"), True),
        ([1, [2]], (1, (2,)), True),
        ({"a": [1]}, FrozenDict({"a": (1,)}), True),
        ({"a": True}, {"a": 1}, False),
        (frozenset({1}), frozenset({True}), False),
        ({1: "x"}, {True: "x"}, False),
        (None, False, False),
        ("1", 1, False),
        (0.1, Decimal("0.1"), True),
    ],
)
def test_equal_follows_rego_not_python(a: object, b: object, expected: bool) -> None:
    assert equal(a, b) is expected
    assert equal(b, a) is expected


def test_order_of_types_is_null_boolean_number_string_array_object_set() -> None:
    ordered: list[object] = [
        None,
        False,
        True,
        -1,
        Decimal("0.5"),
        2,
        "",
        "a",
        (),
        (1,),
        {},
        {"a": 1},
        frozenset(),
    ]
    shuffled = list(reversed(ordered))
    assert sorted(shuffled, key=sort_key) == ordered
    for smaller, larger in itertools.pairwise(ordered):
        assert compare(smaller, larger) == -1
        assert compare(larger, smaller) == 1


def test_arrays_compare_elementwise_then_by_length() -> None:
    assert compare((1, 2), (1, 3)) == -1
    assert compare((1, 2), (1, 2, 0)) == -1
    assert compare([2], (1, 9)) == 1


def test_objects_compare_by_sorted_keys_then_values() -> None:
    assert compare({"a": 1}, {"b": 0}) == -1
    assert compare({"a": 1}, {"a": 2}) == -1
    assert compare({"a": 1}, {"a": 1, "b": 1}) == -1


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (3, "number"),
        (Decimal("1.5"), "number"),
        ("x", "string"),
        ([1], "array"),
        ((1,), "array"),
        ({}, "object"),
        (FrozenDict(), "object"),
        (frozenset(), "set"),
    ],
)
def test_type_name(value: object, name: str) -> None:
    assert type_name(value) == name


def test_type_name_rejects_foreign_objects() -> None:
    with pytest.raises(TypeError, match="not a policy value"):
        type_name(object())


def test_normalize_number() -> None:
    assert normalize_number(Decimal("15.00")) == 15
    assert type(normalize_number(Decimal("15.00"))) is int
    assert normalize_number(Decimal("1E+2")) == 100
    assert str(normalize_number(Decimal("3.50"))) == "3.5"
    huge = normalize_number(Decimal("1e999"))
    assert isinstance(huge, Decimal)  # not a 1000-digit int


def test_from_json_turns_floats_into_exact_decimals_and_keeps_the_rest() -> None:
    document = {"a": [0.1, 2.0, "x"], "b": {"c": 1}}
    converted = from_json(document)
    assert converted == {"a": [Decimal("0.1"), 2, "x"], "b": {"c": 1}}
    assert converted["b"] is document["b"]  # untouched branches are shared
    plain = {"a": [1, "x"], "b": None}
    assert from_json(plain) is plain


def test_freeze_and_thaw() -> None:
    frozen = freeze({"a": [1, {"b": {2}}], "c": 1.5})
    assert frozen == FrozenDict({"a": (1, FrozenDict({"b": frozenset({2})})), "c": Decimal("1.5")})
    hash(frozen)
    assert thaw(frozen) == {"a": [1, {"b": frozenset({2})}], "c": Decimal("1.5")}
    assert type(thaw(frozen)["a"]) is list


def test_to_json_text_matches_opa_json_marshal() -> None:
    value = {"b": (1, Decimal("0.1")), "a": frozenset({"y", "x"}), "c": None, "d": "<&>"}
    assert to_json_text(value) == '{"a":["x","y"],"b":[1,0.1],"c":null,"d":"\\u003c\\u0026\\u003e"}'
    assert to_json_text({1: "one"}) == '{"1":"one"}'
    assert to_json_text(Decimal("123456789012345678901234567890.5")) == (
        "123456789012345678901234567890.5"
    )


# ---------------------------------------------------------------- properties


@given(values, values)
def test_compare_is_antisymmetric_and_consistent_with_equal(a: Any, b: Any) -> None:
    assert compare(a, b) == -compare(b, a)
    assert (compare(a, b) == 0) == equal(a, b)
    assert equal(a, b) == equal(b, a)


@given(values, values, values)
def test_compare_is_transitive(a: Any, b: Any, c: Any) -> None:
    x, y, z = sorted([a, b, c], key=sort_key)
    assert compare(x, y) <= 0
    assert compare(y, z) <= 0
    assert compare(x, z) <= 0


@given(values)
def test_a_value_equals_itself_frozen_and_thawed(value: Any) -> None:
    assert equal(value, value)
    assert compare(value, freeze(value)) == 0
    assert equal(freeze(value), value)
    assert equal(thaw(freeze(value)), value)
    assert freeze(thaw(freeze(value))) == freeze(value)


@given(values, values)
def test_equal_frozen_values_hash_alike(a: Any, b: Any) -> None:
    if equal(a, b):
        assert hash(freeze(a)) == hash(freeze(b))


@given(json_values)
def test_json_text_round_trips_through_json_unmarshal(value: Any) -> None:
    text = to_json_text(value)
    assert equal(BUILTINS["json.unmarshal"].fn(text), value)
    json.loads(text)  # and it is valid JSON for any other reader


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_read_by_their_shortest_repr(number: float) -> None:
    converted = from_json(number)
    assert isinstance(converted, int | Decimal)
    assert Decimal(repr(number)) == converted


def test_to_json_value_is_opas_json_view() -> None:
    value = {1: frozenset({"b", "a"}), "k": (FrozenDict({"x": None}),), FrozenDict({"3": 4}): 5}
    assert to_json_value(value) == {"1": ["a", "b"], "k": [{"x": None}], '{"3":4}': 5}
