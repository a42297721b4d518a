"""Rego's types and the signatures of built-ins, as OPA declares them.

Each built-in declares its signature as a short text, the way OPA's reference
writes it:

    "(x: string, collection: array[string] | set[string]) -> string"

The text is parsed once, at import, into `Signature` (frozen records), so the
registry carries OPA's types: the type checker reads them, and
`docs/builtins.md` is generated from them. A signature text that does not
parse is a programming error and fails the import.

Types: `any`, `null`, `boolean`, `number`, `string`, `array[T]` (any length),
`array<T1, T2>` (fixed length), `set[T]`, `object[K, V]`, unions `A | B`.
A variadic built-in (`print`) writes `...` as its only parameter.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = [
    "ANY",
    "ArrayType",
    "ObjectType",
    "Param",
    "RegoType",
    "Scalar",
    "SetType",
    "Signature",
    "TupleType",
    "UnionType",
    "parse_signature",
    "type_text",
]


class Scalar(msgspec.Struct, frozen=True):
    """`any`, `null`, `boolean`, `number` or `string`."""

    name: str


class ArrayType(msgspec.Struct, frozen=True):
    """An array of any length whose elements have one type."""

    of: RegoType


class TupleType(msgspec.Struct, frozen=True):
    """An array of fixed length, one type per position (OPA's "static" array)."""

    items: tuple[RegoType, ...]


class SetType(msgspec.Struct, frozen=True):
    of: RegoType


class ObjectType(msgspec.Struct, frozen=True):
    key: RegoType
    value: RegoType


class UnionType(msgspec.Struct, frozen=True):
    """One of several types (OPA's `any<A, B>`)."""

    options: tuple[RegoType, ...]


RegoType = Scalar | ArrayType | TupleType | SetType | ObjectType | UnionType

ANY: Final = Scalar("any")
_SCALARS: Final = frozenset({"any", "null", "boolean", "number", "string"})


class Param(msgspec.Struct, frozen=True):
    name: str
    type: RegoType


class Signature(msgspec.Struct, frozen=True):
    """A built-in's parameters and result; `variadic` takes any number of values."""

    params: tuple[Param, ...]
    result: RegoType
    variadic: bool = False

    @property
    def arity(self) -> int:
        return len(self.params)

    def text(self, name: str) -> str:
        """`name(a: string, b: number) -> boolean`, as docs/builtins.md shows it."""
        if self.variadic:
            return f"{name}(...) -> {type_text(self.result)}"
        params = ", ".join(f"{p.name}: {type_text(p.type)}" for p in self.params)
        return f"{name}({params}) -> {type_text(self.result)}"


def type_text(kind: RegoType) -> str:
    """The type in the signature syntax this module parses."""
    if isinstance(kind, Scalar):
        return kind.name
    if isinstance(kind, ArrayType):
        return f"array[{type_text(kind.of)}]"
    if isinstance(kind, TupleType):
        return "array<" + ", ".join(type_text(item) for item in kind.items) + ">"
    if isinstance(kind, SetType):
        return f"set[{type_text(kind.of)}]"
    if isinstance(kind, ObjectType):
        return f"object[{type_text(kind.key)}, {type_text(kind.value)}]"
    return " | ".join(type_text(option) for option in kind.options)


_TOKEN: Final = re.compile(r"\s*(->|\.\.\.|[A-Za-z_][A-Za-z0-9_]*|[\[\]<>(),:|])")


class _Reader:
    """A recursive-descent reader over the tokens of one signature text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None:
                raise ValueError(f"bad signature {text!r} at {position}")
            self.tokens.append(match.group(1))
            position = match.end()
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"bad signature {self.text!r}: expected {expected or 'more'}")
        self.at += 1
        return token

    def union(self) -> RegoType:
        options = [self.atom()]
        while self.peek() == "|":
            self.take("|")
            options.append(self.atom())
        return options[0] if len(options) == 1 else UnionType(tuple(options))

    def atom(self) -> RegoType:
        word = self.take()
        if word in _SCALARS:
            return Scalar(word)
        if word == "array" and self.peek() == "<":
            self.take("<")
            items = [self.union()]
            while self.peek() == ",":
                self.take(",")
                items.append(self.union())
            self.take(">")
            return TupleType(tuple(items))
        if word in ("array", "set", "object"):
            self.take("[")
            first = self.union()
            if word == "object":
                self.take(",")
                second = self.union()
                self.take("]")
                return ObjectType(first, second)
            self.take("]")
            return ArrayType(first) if word == "array" else SetType(first)
        raise ValueError(f"bad signature {self.text!r}: unknown type {word!r}")


def parse_signature(text: str) -> Signature:
    """`(name: type, ...) -> type`; a parameter without a name is called by its position."""
    reader = _Reader(text)
    reader.take("(")
    params: list[Param] = []
    variadic = False
    if reader.peek() == "...":
        reader.take("...")
        variadic = True
    while not variadic and reader.peek() != ")":
        if params:
            reader.take(",")
        name = f"x{len(params) + 1}"
        if reader.at + 1 < len(reader.tokens) and reader.tokens[reader.at + 1] == ":":
            name = reader.take()
            reader.take(":")
        params.append(Param(name, reader.union()))
    reader.take(")")
    reader.take("->")
    result = reader.union()
    if reader.peek() is not None:
        raise ValueError(f"bad signature {text!r}: trailing {reader.peek()!r}")
    return Signature(tuple(params), result, variadic)
