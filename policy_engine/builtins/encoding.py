"""JSON built-ins: json.marshal and json.unmarshal, exact for decimals both ways."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from policy_engine.builtins.base import BUILTIN_ERROR, Builtin, BuiltinError, builtin, want_string
from policy_engine.values import normalize_number, to_json_text

__all__ = ["BUILTINS", "parse_json"]


def marshal(value: object) -> str:
    """Compact JSON text with sorted keys; sets become sorted arrays."""
    return to_json_text(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decimal(text: str) -> int | Decimal:
    return normalize_number(Decimal(text))


def _engine_form(value: Any) -> Any:
    # The decoder makes lists; the engine's own arrays are tuples.
    if isinstance(value, list):
        return tuple(_engine_form(item) for item in value)
    if isinstance(value, dict):
        return {key: _engine_form(item) for key, item in value.items()}
    return value


def parse_json(text: str) -> Any:
    """Decode JSON text into policy values: numbers exact, arrays as tuples."""
    # parse_int too: int() refuses texts past 4,300 digits, Decimal does not.
    decoded = json.loads(
        text, parse_float=_decimal, parse_int=_decimal, parse_constant=_reject_constant
    )
    return _engine_form(decoded)


def unmarshal(text: object) -> Any:
    source = want_string("json.unmarshal", 1, text)
    try:
        return parse_json(source)
    except ValueError as problem:
        raise BuiltinError(BUILTIN_ERROR, f"json.unmarshal: {problem}") from None
    except RecursionError:
        raise BuiltinError(BUILTIN_ERROR, "json.unmarshal: document nested too deeply") from None


BUILTINS: tuple[Builtin, ...] = (
    builtin("json.marshal", marshal, "(x: any) -> string", 'json.marshal({"a": [1, 2]})'),
    builtin(
        "json.unmarshal",
        unmarshal,
        "(x: string) -> any",
        'json.unmarshal(`{"a": 1}`)',
        doc="The value a JSON text encodes.",
    ),
)
