"""The registry holds every built-in the issue lists, with OPA's arity."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from policy_engine.builtins import BUILTINS, Builtin, signature
from policy_engine.builtins.rego_types import parse_signature
from policy_engine.tooling.builtins_catalog import render as render_catalog

CATALOG_FILE = Path(__file__).resolve().parents[2] / "policy_engine" / "builtins" / "catalog.py"

REQUIRED_ARITY = {
    "count": 1, "sum": 1, "product": 1, "max": 1, "min": 1, "sort": 1,
    "concat": 2, "contains": 2, "startswith": 2, "endswith": 2, "lower": 1, "upper": 1,
    "split": 2, "replace": 3, "substring": 3, "indexof": 2, "indexof_n": 2, "trim": 2,
    "trim_space": 1, "trim_prefix": 2, "trim_suffix": 2, "trim_left": 2, "trim_right": 2,
    "sprintf": 2, "format_int": 2, "to_number": 1,
    "is_string": 1, "is_number": 1, "is_boolean": 1, "is_array": 1, "is_object": 1,
    "is_set": 1, "is_null": 1, "type_name": 1,
    "object.get": 3, "object.keys": 1, "object.union": 2, "object.remove": 2,
    "array.concat": 2, "array.slice": 3, "glob.match": 3, "regex.match": 2,
    "union": 1, "intersection": 1, "numbers.range": 2,
    "abs": 1, "round": 1, "ceil": 1, "floor": 1,
    "json.marshal": 1, "json.unmarshal": 1, "net.cidr_contains": 2, "time.parse_rfc3339_ns": 1,
    "plus": 2, "minus": 2, "mul": 2, "div": 2, "rem": 2,
    "lt": 2, "lte": 2, "gt": 2, "gte": 2, "equal": 2, "neq": 2, "and": 2, "or": 2,
}  # fmt: skip


@pytest.mark.parametrize(("name", "arity"), sorted(REQUIRED_ARITY.items()))
def test_builtin_is_registered_with_its_arity(name: str, arity: int) -> None:
    entry = BUILTINS[name]
    assert isinstance(entry, Builtin)
    assert entry.name == name
    assert entry.arity == arity
    assert len(inspect.signature(entry.fn).parameters) == arity


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        BUILTINS["count"] = BUILTINS["sum"]  # type: ignore[index]


def test_the_committed_catalog_is_current() -> None:
    assert CATALOG_FILE.read_text(encoding="utf-8") == render_catalog(), (
        "policy_engine/builtins/catalog.py is stale: run `python -m "
        "policy_engine.tooling.builtins_catalog > policy_engine/builtins/catalog.py`"
    )


def test_the_catalog_signatures_are_the_families_own() -> None:
    for name, entry in BUILTINS.items():
        assert signature(name) == entry.signature, name
    assert signature("no.such.builtin") is None


def test_loading_a_policy_imports_only_the_families_it_calls() -> None:
    # A fresh interpreter: this process has imported every family already.
    script = (
        "import sys\n"
        "from policy_engine import Engine\n"
        "engine = Engine.from_sources({'p.rego': 'package p\\nx := count([1]) + 1\\n'})\n"
        "assert engine.query('x = data.p.x') == [{'x': 2}]\n"
        "print(sorted(m for m in sys.modules if m.startswith('policy_engine.builtins.')))\n"
        "print('yaml' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    loaded = set(ast.literal_eval(out[0]))
    assert "policy_engine.builtins.aggregates" in loaded  # count
    assert "policy_engine.builtins.operators" in loaded  # +
    for family in ("documents", "jwt", "x509", "time", "hashing", "networks", "graphs"):
        assert f"policy_engine.builtins.{family}" not in loaded
    assert out[1] == "False"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_carries_a_signature_matching_its_function(name: str) -> None:
    entry = BUILTINS[name]
    assert entry.signature is not None, f"`{name}` has no declared type"
    parameters = len(inspect.signature(entry.fn).parameters)
    if entry.signature.variadic:
        return
    assert parameters == entry.signature.arity + (1 if entry.context else 0)
    assert entry.example.startswith(f"{name}("), "the example calls the built-in itself"
    assert entry.description, f"`{name}` needs a one-line description (docstring or doc=)"


def test_signature_text_round_trips() -> None:
    text = "(x: string, ys: array[number] | set[string], o: object[string, array<boolean, null>])"
    signature = parse_signature(text + " -> set[any]")
    assert signature.text("f") == "f" + text + " -> set[any]"
    assert signature.arity == 3
    assert parse_signature("(...) -> boolean").variadic


@pytest.mark.parametrize("text", ["(x: strin) -> any", "(x: string -> any", "() -> array[]"])
def test_a_malformed_signature_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad signature"):
        parse_signature(text)
