"""A JSON Schema as the type of `input`, as `opa check --schema` reads one.

OPA's rules (its `parseSchema`): an object with `properties` has exactly those
keys unless `additionalProperties` allows more (then any other key has type
`any`); an object without `properties` may have any keys; `items` types an
array (a list of schemas types each position); `anyOf`/`oneOf` and a list of
`type`s are unions; `enum` and `const` have the types of their values; a
schema without `type` is `any`. `$ref` to `#/...` inside the same document is
followed; anything the checker cannot read (remote references, `allOf` that
do not merge simply) is `any`, so a schema never makes the checker stricter
than the schema says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from policy_engine.errors import COMPILE_ERROR, Diagnostic, PolicyError
from policy_engine.typecheck.types import (
    ANY,
    BOOLEAN,
    NULL,
    NUMBER,
    STRING,
    Arr,
    Obj,
    Type,
    join,
)

__all__ = ["InputSchema", "parse_input_schema", "schema_type"]

_SCALARS: Mapping[str, Type] = {
    "string": STRING,
    "number": NUMBER,
    "integer": NUMBER,
    "boolean": BOOLEAN,
    "null": NULL,
}

# A schema nested deeper than this (or a `$ref` cycle) types as `any`.
_MAX_DEPTH = 64


class InputSchema(msgspec.Struct, frozen=True):
    """The type `input` has, and the schema it came from (named in error messages)."""

    source: str
    type: Type


def parse_input_schema(text: str, source: str) -> InputSchema:
    """A JSON Schema's text as the type of `input`; invalid JSON is a `PolicyError` naming it.

    The caller reads the file (the engine core does no I/O but loading policies)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            [
                Diagnostic(
                    code=COMPILE_ERROR,
                    message=f"the input schema is not JSON: {exc.msg}; give a JSON Schema file",
                    file=source,
                    line=exc.lineno,
                    column=exc.colno,
                )
            ]
        ) from None
    return InputSchema(source, schema_type(document))


def schema_type(schema: Any, root: Any = None, depth: int = 0) -> Type:
    """The type of the values a JSON Schema accepts (`any` where it cannot tell)."""
    root = schema if root is None else root
    if depth > _MAX_DEPTH or not isinstance(schema, dict):
        return ANY
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        return ANY if target is None else schema_type(target, root, depth + 1)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return join(*(schema_type(option, root, depth + 1) for option in options))
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1 and "type" not in schema:
            return schema_type(all_of[0], root, depth + 1)
        return ANY
    if "const" in schema:
        return _value_type(schema["const"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return join(*(_value_type(value) for value in schema["enum"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return join(*(schema_type({**schema, "type": one}, root, depth + 1) for one in kind))
    if isinstance(kind, str) and kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "object":
        return _object(schema, root, depth)
    return ANY


def _array(schema: dict[str, Any], root: Any, depth: int) -> Type:
    items = schema.get("items")
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list):
        rest = None if items is False else schema_type(items, root, depth + 1)
        return Arr(tuple(schema_type(item, root, depth + 1) for item in prefix), rest)
    if isinstance(items, list):
        return Arr(tuple(schema_type(item, root, depth + 1) for item in items), None)
    return Arr((), schema_type(items, root, depth + 1) if isinstance(items, dict) else ANY)


def _object(schema: dict[str, Any], root: Any, depth: int) -> Type:
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return Obj((), ANY, ANY)
    props = tuple(
        (str(name), schema_type(sub, root, depth + 1)) for name, sub in properties.items()
    )
    extra = schema.get("additionalProperties")
    if extra is True or isinstance(extra, dict) or schema.get("patternProperties"):
        return Obj(props, ANY, ANY)
    return Obj(props, None, None)


def _resolve(root: Any, ref: Any) -> Any:
    """A `#/json/pointer` inside the same document (None for anything else)."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _value_type(value: Any) -> Type:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return Arr(tuple(_value_type(item) for item in value), None)
    if isinstance(value, dict):
        return Obj(tuple((str(k), _value_type(v)) for k, v in value.items()), None, None)
    return ANY
