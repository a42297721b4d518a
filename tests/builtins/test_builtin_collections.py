"""Object, array, set and type built-ins."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from policy_engine.builtins import BUILTINS, BuiltinError
from policy_engine.values import FrozenDict, equal

D = Decimal


def call(name: str, *args: object) -> Any:
    return BUILTINS[name].fn(*args)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("object.get", ({"a": 1}, "a", 0), 1),
        ("object.get", ({"a": 1}, "b", 0), 0),
        ("object.get", ({"a": None}, "a", 0), None),
        ("object.get", ({"a": [{"b": True}]}, ["a", 0, "b"], False), True),
        ("object.get", ({"a": [{"b": True}]}, ["a", 1, "b"], "none"), "none"),
        ("object.get", ({"a": {"b": 1}}, [], "none"), {"a": {"b": 1}}),
        ("object.get", ({("x",): 1}, ["x"], 0), 0),  # an array key is always a path
        ("object.get", ({"s": frozenset({"m"})}, ["s", "m"], 0), "m"),
        ("object.get", ({1: "one"}, 1, 0), "one"),
        ("object.get", ({FrozenDict({"k": 1}): "v"}, {"k": 1}, 0), "v"),
        ("object.keys", ({"a": 1, "b": 2},), frozenset({"a", "b"})),
        (
            "object.union",
            ({"a": 1, "b": {"c": 1}}, {"b": {"d": 2}}),
            {"a": 1, "b": {"c": 1, "d": 2}},
        ),
        ("object.union", ({"a": {"c": 1}}, {"a": 2}), {"a": 2}),
        ("object.remove", ({"a": 1, "b": 2}, ["a"]), {"b": 2}),
        ("object.remove", ({"a": 1, "b": 2}, frozenset({"a", "b"})), {}),
        ("object.remove", ({"a": 1, "b": 2}, {"b": 0}), {"a": 1}),
        ("array.concat", ([1], (2, 3)), (1, 2, 3)),
        ("array.slice", ((1, 2, 3, 4), 1, 3), (2, 3)),
        ("array.slice", ((1, 2, 3), -5, 99), (1, 2, 3)),
        ("array.slice", ((1, 2, 3), 2, 1), ()),
        ("union", (frozenset({frozenset({1}), frozenset({2})}),), frozenset({1, 2})),
        ("union", (frozenset(),), frozenset()),
        ("intersection", (frozenset({frozenset({1, 2}), frozenset({2, 3})}),), frozenset({2})),
        ("intersection", (frozenset(),), frozenset()),
        ("is_string", ("x",), True),
        ("is_string", (1,), False),
        ("is_number", (D("1.5"),), True),
        ("is_number", (True,), False),
        ("is_boolean", (False,), True),
        ("is_array", ([1],), True),
        ("is_array", (frozenset(),), False),
        ("is_object", ({},), True),
        ("is_set", (frozenset(),), True),
        ("is_null", (None,), True),
        ("is_null", (False,), False),
        ("type_name", ((),), "array"),
        ("type_name", (frozenset(),), "set"),
    ],
)
def test_collection_builtin(name: str, args: tuple[object, ...], expected: object) -> None:
    assert equal(call(name, *args), expected)


def test_object_results_are_plain_dicts_and_arrays_tuples() -> None:
    assert type(call("object.union", {"a": 1}, {"b": 2})) is dict
    assert type(call("array.concat", [1], [2])) is tuple


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("object.get", ([], "a", 0), "object.get: operand 1 must be object but got array"),
        ("object.keys", ("a",), "object.keys: operand 1 must be object but got string"),
        ("object.union", ({}, 1), "object.union: operand 2 must be object but got number"),
        ("object.remove", ({}, 1), "object.remove: operand 2 must be one of"),
        ("array.concat", ([], {}), "array.concat: operand 2 must be array but got object"),
        ("array.slice", ([], "0", 1), "array.slice: operand 2 must be number but got string"),
        ("union", (frozenset({1}),), "union: operand 1 must be set of sets"),
        ("intersection", ([],), "intersection: operand 1 must be set but got array"),
    ],
)
def test_collection_type_errors(name: str, args: tuple[object, ...], message: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call(name, *args)
    assert raised.value.code == "eval_type_error"
    assert message in raised.value.message
