"""String built-ins and sprintf, with Go's semantics as OPA exposes them."""

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
        ("concat", (", ", ["a", "b"]), "a, b"),
        ("concat", ("-", frozenset({"b", "a", "c"})), "a-b-c"),
        ("concat", ("-", ()), ""),
        ("contains", ("openai/gpt-4", "/"), True),
        ("contains", ("abc", "d"), False),
        ("startswith", ("gpt-4o", "gpt-"), True),
        ("endswith", ("gpt-4o", "4"), False),
        ("lower", ("GPT-4",), "gpt-4"),
        ("upper", ("gpt-4",), "GPT-4"),
        ("split", ("openai/gpt-4", "/"), ("openai", "gpt-4")),
        ("split", ("", "."), ("",)),
        ("split", ("test", ""), ("t", "e", "s", "t")),
        ("split", ("", ""), ()),
        ("replace", ("a.b.c", ".", "/"), "a/b/c"),
        ("substring", ("hello", 1, 3), "ell"),
        ("substring", ("hello", 1, -1), "ello"),
        ("substring", ("hello", 9, 2), ""),
        ("substring", ("héllo", 1, 2), "él"),
        ("indexof", ("hello", "l"), 2),
        ("indexof", ("hello", "z"), -1),
        ("indexof", ("😇😀x", "x"), 2),
        ("indexof_n", ("dogcatdogcat", "cat"), (3, 9)),
        ("indexof_n", ("aaa", "aa"), (0, 1)),
        ("indexof_n", ("dog", "cat"), ()),
        ("trim", ("  xx  ", " "), "xx"),
        ("trim", ("--a-b--", "-"), "a-b"),
        ("trim_left", ("xxaxx", "x"), "axx"),
        ("trim_right", ("xxaxx", "x"), "xxa"),
        ("trim_prefix", ("openai/gpt-4", "openai/"), "gpt-4"),
        ("trim_prefix", ("gpt-4", "openai/"), "gpt-4"),
        ("trim_suffix", ("a.rego", ".rego"), "a"),
        ("trim_space", ("\t hi \n",), "hi"),
    ],
)
def test_string_builtin(name: str, args: tuple[object, ...], expected: object) -> None:
    assert equal(call(name, *args), expected)


@pytest.mark.parametrize(
    ("name", "args", "code", "message"),
    [
        ("concat", (",", [1]), "eval_type_error", "containing number"),
        ("concat", (1, []), "eval_type_error", "concat: operand 1 must be string but got number"),
        ("lower", (1,), "eval_type_error", "lower: operand 1 must be string but got number"),
        ("startswith", ("a", None), "eval_type_error", "operand 2 must be string but got null"),
        ("substring", ("abc", -1, 1), "eval_builtin_error", "substring: negative offset"),
        ("substring", ("abc", D("0.5"), 1), "eval_type_error", "must be integer"),
        ("indexof", ("abc", ""), "eval_builtin_error", "empty search character"),
        ("indexof_n", ("abc", ""), "eval_builtin_error", "empty search character"),
        ("sprintf", ("%v", "x"), "eval_type_error", "sprintf: operand 2 must be array"),
    ],
)
def test_string_errors(name: str, args: tuple[object, ...], code: str, message: str) -> None:
    with pytest.raises(BuiltinError) as raised:
        call(name, *args)
    assert raised.value.code == code
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("template", "args", "expected"),
    [
        ("%s", ["x"], "x"),
        ("%v", [1], "1"),
        ("%d", [42], "42"),
        ("%05d", [-42], "-0042"),
        ("%-4d|", [7], "7   |"),
        ("%+d", [5], "+5"),
        ("%x %X %o %b", [255, 255, 8, 5], "ff FF 10 101"),
        ("%#x", [255], "0xff"),
        ("%x", ["hi"], "6869"),
        ("%.2f", [D("19.999")], "20.00"),
        ("%.2f", [D("0.1")], "0.10"),
        ("%f", [D("1.5")], "1.500000"),
        ("%e", [D("1234.5")], "1.234500e+03"),
        ("%.4g", [D("12312.2")], "1.231e+04"),
        ("%.4g", [D("0.000012345")], "1.234e-05"),
        ("%.4g", [D("0.0012345")], "0.001234"),
        ("%.3g", [D("1.5")], "1.5"),
        ("%.2G", [D("1234.5")], "1.2E+03"),
        ("%v", [D("0.1")], "0.1"),
        ("%v", [D("1234567.5")], "1.2345675e+06"),
        ("%v", [D("0.00001")], "1e-05"),
        ("%q", ['say "hi"'], '"say \\"hi\\""'),
        ("%8s|%-8s|", ["ab", "cd"], "      ab|cd      |"),
        ("%.2s", ["abc"], "ab"),
        ("%v", [[1, "a", None, True]], '[1, "a", null, true]'),
        ("%v", [{"k": [1], "a": {}}], '{"a": {}, "k": [1]}'),
        ("%v", [frozenset({3, 1})], "{1, 3}"),
        ("%v", [frozenset()], "set()"),
        ("%v", [None], "null"),
        ("%s", [True], "true"),
        ("%v", [FrozenDict({1: "x"})], '{1: "x"}'),
        ("100%%", [], "100%"),
        ("%s", [123456789123456789123], "123456789123456789123"),
        ("%v", [10**30 + 1], "1000000000000000000000000000001"),
        ("%T %T %T", [1, D("1.5"), "s"], "int64 float64 string"),
        # Go's own complaints, as OPA passes them through:
        ("%d", [D("1.5")], "%!d(float64=1.5)"),
        ("%s", [1], "%!s(int64=1)"),  # OPA's engine (opa-golib-python-bindings 0.4.4)
        ("%d", ["x"], "%!d(string=x)"),
        ("%v %v", [1], "1 %!v(MISSING)"),
        ("%v", [1, 2], "1%!(EXTRA int64=2)"),
        ("%!", [1], "%!!(int64=1)"),
        # the value of a wrong verb is shown as %v with the verb's flags, width, precision:
        ("%5d", ["1.5"], "%!d(string=  1.5)"),
        ("%.2f", [1], "%!f(int64=01)"),
        ("%05s", [3], "%!s(int64=00003)"),
        ("%.3d", [7], "007"),
        # %q quotes as Go's strconv: \xNN for ASCII controls, \uNNNN for other unprintables
        ("%q", [1], "'\\x01'"),
        ("%q", ["a\u0001\u2028é"], '"a\\x01\\u2028é"'),
        ("%", [], "%!(NOVERB)"),
    ],
)
def test_sprintf_matches_go_fmt(template: str, args: list[object], expected: str) -> None:
    assert call("sprintf", template, args) == expected
