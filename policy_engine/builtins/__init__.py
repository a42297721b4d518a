"""The built-in function registry: Rego name -> `Builtin(name, arity, fn)`.

One module per family (OPA's `topdown/` and regorus' `builtins/` layout).
Every function takes policy values (see `policy_engine.values`) and returns a
value, `UNDEFINED`, or raises `BuiltinError` with OPA's code
(`eval_type_error` or `eval_builtin_error`) and a message that starts with the
built-in's name. The engine decides whether an error is strict or undefined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from policy_engine.builtins import (
    aggregates,
    arrays,
    bits,
    codecs,
    documents,
    encoding,
    formatting,
    glob_intersection,
    graphs,
    hashing,
    json_paths,
    jwt,
    net,
    networks,
    numbers,
    objects,
    operators,
    regex_glob,
    regexes,
    sets,
    strings,
    text,
    time,
    types,
    units,
    versions,
    world,
    x509,
)
from policy_engine.builtins.base import BUILTIN_ERROR, EVAL_TYPE_ERROR, Builtin, BuiltinError

__all__ = ["BUILTINS", "BUILTIN_ERROR", "EVAL_TYPE_ERROR", "Builtin", "BuiltinError"]

_FAMILIES: Final = (
    aggregates,
    arrays,
    bits,
    codecs,
    documents,
    encoding,
    formatting,
    glob_intersection,
    graphs,
    hashing,
    json_paths,
    jwt,
    net,
    networks,
    numbers,
    objects,
    operators,
    regex_glob,
    regexes,
    sets,
    strings,
    text,
    time,
    types,
    units,
    versions,
    world,
    x509,
)


def _registry(entries: Iterable[Builtin]) -> Mapping[str, Builtin]:
    registry: dict[str, Builtin] = {}
    for entry in entries:
        if entry.name in registry:
            raise RuntimeError(f"built-in `{entry.name}` is declared twice")
        registry[entry.name] = entry
    return MappingProxyType(registry)


BUILTINS: Final[Mapping[str, Builtin]] = _registry(
    entry for family in _FAMILIES for entry in family.BUILTINS
)
