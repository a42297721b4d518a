"""The type checker's types: OPA's `types` package, reduced to what the checker needs.

The built-in registry declares signatures with `builtins.rego_types`; the
checker also needs objects with known keys (object literals, JSON Schemas),
so it works on these frozen records and converts signatures once:

- `ANY` — any value (OPA's `any`); never the cause of an error.
- `Scalar("null" | "boolean" | "number" | "string")`.
- `Arr(items, rest)` — an array: `items` types its leading positions, `rest`
  every position after them (None: the array has exactly `len(items)` elements).
- `Obj(props, key, value)` — an object: `props` are the known keys and their
  types; `key`/`value` type every other key (None: there are no other keys).
- `SetOf(of)`, `Union(options)` (OPA's `any<A, B>`), `Func(args, result)`.

`unifies` is OPA's `unifies`: may a value of one type also have the other?
A union unifies when any option does, so doubt always resolves to "yes".
"""

from __future__ import annotations

from typing import Final

import msgspec

from policy_engine.builtins import rego_types as rt

__all__ = [
    "ANY",
    "BOOLEAN",
    "NULL",
    "NUMBER",
    "STRING",
    "Arr",
    "Func",
    "Obj",
    "Scalar",
    "SetOf",
    "Type",
    "Union",
    "from_rego_type",
    "from_signature",
    "join",
    "keys_of",
    "select",
    "show",
    "unifies",
    "values_of",
]


class Scalar(msgspec.Struct, frozen=True):
    name: str


class Arr(msgspec.Struct, frozen=True):
    items: tuple[Type, ...]
    rest: Type | None


class Obj(msgspec.Struct, frozen=True):
    props: tuple[tuple[str, Type], ...]
    key: Type | None
    value: Type | None

    def prop(self, name: str) -> Type | None:
        for key, kind in self.props:
            if key == name:
                return kind
        return None


class SetOf(msgspec.Struct, frozen=True):
    of: Type


class Union(msgspec.Struct, frozen=True):
    options: tuple[Type, ...]


class Func(msgspec.Struct, frozen=True):
    args: tuple[Type, ...]
    result: Type
    variadic: bool = False


Type = Scalar | Arr | Obj | SetOf | Union | Func

ANY: Final = Scalar("any")
NULL: Final = Scalar("null")
BOOLEAN: Final = Scalar("boolean")
NUMBER: Final = Scalar("number")
STRING: Final = Scalar("string")
_SCALAR_NAMES: Final = {kind.name: kind for kind in (ANY, NULL, BOOLEAN, NUMBER, STRING)}


def from_rego_type(kind: rt.RegoType) -> Type:
    """A registry type (`builtins.rego_types`) as a checker type."""
    if isinstance(kind, rt.Scalar):
        return _SCALAR_NAMES[kind.name]
    if isinstance(kind, rt.ArrayType):
        return Arr((), from_rego_type(kind.of))
    if isinstance(kind, rt.TupleType):
        return Arr(tuple(from_rego_type(item) for item in kind.items), None)
    if isinstance(kind, rt.SetType):
        return SetOf(from_rego_type(kind.of))
    if isinstance(kind, rt.ObjectType):
        return Obj((), from_rego_type(kind.key), from_rego_type(kind.value))
    return join(*(from_rego_type(option) for option in kind.options))


def from_signature(signature: rt.Signature) -> Func:
    return Func(
        tuple(from_rego_type(param.type) for param in signature.params),
        from_rego_type(signature.result),
        signature.variadic,
    )


def join(*kinds: Type | None) -> Type:
    """The union of the types (OPA's `types.Or`); unknown (None) or `any` absorbs all."""
    options: list[Type] = []
    for kind in kinds:
        if kind is None or kind == ANY:
            return ANY
        for option in kind.options if isinstance(kind, Union) else (kind,):
            if option not in options:
                options.append(option)
    if not options:
        return ANY
    return options[0] if len(options) == 1 else Union(tuple(options))


def unifies(a: Type, b: Type) -> bool:
    """Whether some value has both types (OPA's `unifies`)."""
    if a == ANY or b == ANY:
        return not isinstance(a, Func) and not isinstance(b, Func)
    if isinstance(a, Union):
        return any(unifies(option, b) for option in a.options)
    if isinstance(b, Union):
        return any(unifies(a, option) for option in b.options)
    if isinstance(a, Scalar) or isinstance(b, Scalar):
        return a == b
    if isinstance(a, Arr) and isinstance(b, Arr):
        return _arrays_unify(a, b)
    if isinstance(a, Obj) and isinstance(b, Obj):
        return _objects_unify(a, b) and _objects_unify(b, a)
    if isinstance(a, SetOf) and isinstance(b, SetOf):
        return unifies(a.of, b.of)
    if isinstance(a, Func) and isinstance(b, Func):
        return len(a.args) == len(b.args) and all(map(unifies, a.args, b.args))
    return False


def _arrays_unify(a: Arr, b: Arr) -> bool:
    for i in range(max(len(a.items), len(b.items))):
        left, right = _position(a, i), _position(b, i)
        if left is None or right is None or not unifies(left, right):
            return False
    if a.rest is not None and b.rest is not None:
        return unifies(a.rest, b.rest)
    return True


def _position(kind: Arr, i: int) -> Type | None:
    return kind.items[i] if i < len(kind.items) else kind.rest


def _objects_unify(a: Obj, b: Obj) -> bool:
    for name, kind in a.props:
        other = b.prop(name)
        if other is None:
            if b.key is None or b.value is None:
                return False  # `{"a": 1, "b": 2} == {"a": 1}`: b has no "b" at all
            if not unifies(b.key, STRING):
                # OPA does not constrain a key that b's dynamic part cannot hold:
                # `{k: true | k := 1} == {"a": true}` loads (and is undefined).
                continue
            other = b.value
        if not unifies(kind, other):
            return False
    if a.value is not None and b.value is not None:
        return unifies(a.value, b.value)
    return True


def _type_of_key(key: object) -> Type:
    if key is None:
        return NULL
    if isinstance(key, bool):
        return BOOLEAN
    if isinstance(key, str):
        return STRING
    return NUMBER


def select(kind: Type, key: object) -> Type | None:
    """The type of `value[key]` for a constant key (None: no such element can exist)."""
    if kind == ANY:
        return ANY
    if isinstance(kind, Union):
        found = [t for t in (select(option, key) for option in kind.options) if t is not None]
        return join(*found) if found else None
    if isinstance(kind, Obj):
        if isinstance(key, str):
            known = kind.prop(key)
            if known is not None:
                return known
        if kind.key is not None and kind.value is not None and unifies(kind.key, _type_of_key(key)):
            return kind.value
        return None
    if isinstance(kind, Arr):
        if isinstance(key, bool) or not isinstance(key, int | float):
            return None
        if isinstance(key, int) and 0 <= key < len(kind.items):
            return kind.items[key]
        if kind.rest is not None:
            return kind.rest
        return join(*kind.items) if kind.items and not isinstance(key, int) else None
    if isinstance(kind, SetOf):
        return kind.of if unifies(kind.of, _type_of_key(key)) else None
    return None


def keys_of(kind: Type) -> Type | None:
    """The type of the keys (indexes, elements) of a collection; None for a scalar."""
    if kind == ANY:
        return ANY
    if isinstance(kind, Union):
        found = [t for t in (keys_of(option) for option in kind.options) if t is not None]
        return join(*found) if found else None
    if isinstance(kind, Arr):
        return NUMBER
    if isinstance(kind, SetOf):
        return kind.of
    if isinstance(kind, Obj):
        parts: list[Type] = [STRING] if kind.props else []
        if kind.key is not None:
            parts.append(kind.key)
        return join(*parts) if parts else ANY
    return None


def values_of(kind: Type) -> Type | None:
    """The type of the values of a collection; None for a scalar."""
    if kind == ANY:
        return ANY
    if isinstance(kind, Union):
        found = [t for t in (values_of(option) for option in kind.options) if t is not None]
        return join(*found) if found else None
    if isinstance(kind, Arr):
        parts = [*kind.items, *([kind.rest] if kind.rest is not None else [])]
        return join(*parts) if parts else ANY
    if isinstance(kind, SetOf):
        return kind.of
    if isinstance(kind, Obj):
        parts = [value for _, value in kind.props]
        if kind.value is not None:
            parts.append(kind.value)
        return join(*parts) if parts else ANY
    return None


def show(kind: Type | None) -> str:
    """The type as OPA prints it (`array[string]`, `object<a: number>`, `any<A, B>`)."""
    if kind is None:
        return "???"
    if isinstance(kind, Scalar):
        return kind.name
    if isinstance(kind, Arr):
        if not kind.items:
            return f"array[{show(kind.rest)}]"
        inner = ", ".join(show(item) for item in kind.items)
        return f"array<{inner}>" if kind.rest is None else f"array<{inner}>[{show(kind.rest)}]"
    if isinstance(kind, SetOf):
        return f"set[{show(kind.of)}]"
    if isinstance(kind, Obj):
        dynamic = f"[{show(kind.key)}: {show(kind.value)}]" if kind.key is not None else ""
        if not kind.props:
            return f"object{dynamic or '<>'}"
        inner = ", ".join(f"{name}: {show(value)}" for name, value in kind.props)
        return f"object<{inner}>{dynamic}"
    if isinstance(kind, Func):
        return f"({', '.join(show(arg) for arg in kind.args)}) => {show(kind.result)}"
    return "any<" + ", ".join(show(option) for option in kind.options) + ">"
