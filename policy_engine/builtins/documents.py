"""Document built-ins: json.is_valid, json.marshal_with_options, json.verify_schema,
json.match_schema, yaml.marshal, yaml.unmarshal, yaml.is_valid.

JSON Schema validation uses the `jsonschema` library (draft 2020-12 and the
older drafts a schema names with `$schema`), as OPA uses gojsonschema.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final

import yaml

from policy_engine.builtins.base import (
    BUILTIN_ERROR,
    EVAL_TYPE_ERROR,
    Builtin,
    BuiltinError,
    builtin,
    operand_error,
    want_object,
    want_string,
)
from policy_engine.builtins.encoding import parse_json
from policy_engine.values import normalize_number, thaw, to_json_text, to_json_value

__all__ = ["BUILTINS"]


def is_valid_json(value: object) -> bool:
    """Whether the value is a string holding valid JSON."""
    if not isinstance(value, str):
        return False
    try:
        parse_json(value)
    except (ValueError, RecursionError):
        return False
    return True


_MARSHAL_OPTIONS: Final = frozenset({"pretty", "indent", "prefix"})


def marshal_with_options(value: object, options: object) -> str:
    """JSON text, indented with `indent` (default a tab) and `prefix` when pretty."""
    settings = want_object("json.marshal_with_options", 2, options)
    for key in settings:
        if key not in _MARSHAL_OPTIONS:
            raise BuiltinError(
                EVAL_TYPE_ERROR,
                f'json.marshal_with_options: object contained unknown key "{key}"',
            )
    pretty = settings.get("pretty", "indent" in settings or "prefix" in settings)
    indent = settings.get("indent", "\t")
    prefix = settings.get("prefix", "")
    if not isinstance(pretty, bool):
        raise operand_error("json.marshal_with_options", 2, "pretty to be a boolean", pretty)
    if not isinstance(indent, str) or not isinstance(prefix, str):
        raise BuiltinError(
            EVAL_TYPE_ERROR, "json.marshal_with_options: indent and prefix must be strings"
        )
    if not pretty:
        return to_json_text(value)
    lines = _indented(to_json_value(value), indent, 0)
    return "\n".join(prefix + line for line in lines)


def _indented(value: Any, indent: str, depth: int) -> list[str]:
    inner = indent * (depth + 1)
    if isinstance(value, list) and value:
        lines = ["["]
        for position, item in enumerate(value):
            sub = _indented(item, indent, depth + 1)
            sub[0] = inner + sub[0]
            if position < len(value) - 1:
                sub[-1] += ","
            lines.extend(sub)
        return [*lines, indent * depth + "]"]
    if isinstance(value, dict) and value:
        lines = ["{"]
        for position, (key, item) in enumerate(value.items()):
            sub = _indented(item, indent, depth + 1)
            sub[0] = f"{inner}{to_json_text(key)}: {sub[0]}"
            if position < len(value) - 1:
                sub[-1] += ","
            lines.extend(sub)
        return [*lines, indent * depth + "}"]
    return [to_json_text(value)]


# ---------------------------------------------------------------- JSON Schema


def _plain(value: Any) -> Any:
    """The value as the JSON the validator reads: exact numbers become int or float."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _schema(name: str, position: int, value: object) -> Any:
    if isinstance(value, str):
        try:
            return _plain(thaw(parse_json(value)))
        except (ValueError, RecursionError) as problem:
            raise BuiltinError(BUILTIN_ERROR, f"{name}: invalid JSON: {problem}") from None
    if isinstance(value, (dict, bool)):
        return _plain(thaw(value))
    raise operand_error(name, position, "one of {string, object, boolean}", value)


def _check_schema(schema: Any) -> str | None:
    import jsonschema  # imported on first use: it takes a fifth of a second

    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
    except jsonschema.SchemaError as problem:
        return str(problem.message)
    return None


def verify_schema(schema: object) -> tuple[bool, str | None]:
    """[true, null] when the value is a valid JSON Schema, else [false, the reason]."""
    problem = _check_schema(_schema("json.verify_schema", 1, schema))
    return (problem is None, problem)


def match_schema(document: object, schema: object) -> tuple[bool, tuple[Any, ...]]:
    """[true, []] when the document satisfies the schema, else [false, its errors]."""
    loaded = _schema("json.match_schema", 2, schema)
    problem = _check_schema(loaded)
    if problem is not None:
        raise BuiltinError(BUILTIN_ERROR, f"json.match_schema: invalid schema: {problem}")
    import jsonschema

    validator = jsonschema.validators.validator_for(loaded)(loaded)
    errors = []
    for error in sorted(validator.iter_errors(_plain(thaw(document))), key=lambda e: e.path):
        field = ".".join(str(part) for part in error.absolute_path) or "(root)"
        errors.append(
            {
                "error": f"{field}: {error.message}",
                "type": str(error.validator),
                "field": field,
                "desc": error.message,
            }
        )
    return (not errors, tuple(errors))


# ---------------------------------------------------------------- YAML


class _JsonLikeLoader(yaml.SafeLoader):
    """YAML as JSON data: timestamps stay strings (as Go's YAML-to-JSON reading keeps them)."""


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _from_yaml(value: Any) -> Any:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("YAML .inf and .nan have no JSON form")
        return normalize_number(Decimal(repr(value)))
    if isinstance(value, list):
        return tuple(_from_yaml(item) for item in value)
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else to_json_text(_from_yaml(key)): _from_yaml(item)
            for key, item in value.items()
        }
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def yaml_unmarshal(value: object) -> Any:
    """The value a YAML document encodes."""
    text = want_string("yaml.unmarshal", 1, value)
    try:
        return _from_yaml(yaml.load(text, Loader=_JsonLikeLoader))  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"yaml.unmarshal: {_go_yaml_message(problem)}") from None
    except (yaml.YAMLError, ValueError) as problem:
        raise BuiltinError(BUILTIN_ERROR, f"yaml.unmarshal: yaml: {problem}") from None
    except RecursionError:
        raise BuiltinError(BUILTIN_ERROR, "yaml.unmarshal: document nested too deeply") from None


def _go_yaml_message(problem: yaml.MarkedYAMLError) -> str:
    """Go's wording: `yaml: line 1: did not find expected ',' or ']'`."""
    mark = problem.context_mark or problem.problem_mark
    line = mark.line + 1 if mark is not None else 1
    text = problem.problem or str(problem)
    expected, _, _ = text.partition(", but ")
    if expected.startswith("expected "):
        text = f"did not find {expected}"
    return f"yaml: line {line}: {text}"


def yaml_is_valid(value: object) -> bool:
    """Whether the value is a string holding valid YAML."""
    if not isinstance(value, str):
        return False
    try:
        yaml_unmarshal(value)
    except BuiltinError:
        return False
    return True


def yaml_marshal(value: object) -> str:
    """The value as a YAML document (sets as sorted sequences)."""
    plain = json.loads(to_json_text(value))
    return str(yaml.safe_dump(plain, sort_keys=True, allow_unicode=True, default_flow_style=False))


BUILTINS: tuple[Builtin, ...] = (
    builtin(
        "json.is_valid", is_valid_json, "(x: string) -> boolean", 'json.is_valid("{\\"a\\": 1}")'
    ),
    builtin(
        "json.marshal_with_options",
        marshal_with_options,
        "(x: any, opts: object[string, boolean | string]) -> string",
        'json.marshal_with_options({"a": [1]}, {"indent": "  "})',
    ),
    builtin(
        "json.verify_schema",
        verify_schema,
        "(schema: string | object[any, any]) -> array<boolean, null | string>",
        'json.verify_schema({"type": "string"})',
    ),
    builtin(
        "json.match_schema",
        match_schema,
        "(document: any, schema: string | object[any, any])"
        " -> array<boolean, array[object[string, any]]>",
        'json.match_schema(42, {"type": "string"})',
    ),
    builtin("yaml.marshal", yaml_marshal, "(x: any) -> string", 'yaml.marshal({"a": [1, 2]})'),
    builtin("yaml.unmarshal", yaml_unmarshal, "(x: string) -> any", 'yaml.unmarshal("a: [1, 2]")'),
    builtin("yaml.is_valid", yaml_is_valid, "(x: string) -> boolean", 'yaml.is_valid("a: 1")'),
)
