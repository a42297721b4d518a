"""The built-in function registry: Rego name -> `Builtin(name, arity, fn)`.

One module per family (OPA's `topdown/` and regorus' `builtins/` layout).
Every function takes policy values (see `policy_engine.values`) and returns a
value, `UNDEFINED`, or raises `BuiltinError` with OPA's code
(`eval_type_error` or `eval_builtin_error`) and a message that starts with the
built-in's name. The engine decides whether an error is strict or undefined.

Families are imported on first use. Importing all ~30 of them (and what they
import: yaml, hashlib, the time zone and certificate code) took about a third
of the cold load of a policy that calls none of them, so `catalog.py` (generated
from the families, checked current by the registry test) says which family
holds each name and gives its signature: the type checker reads signatures
from there (`signature`), and `BUILTINS[name]` imports the family that
implements `name` the first time it is asked for.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

from policy_engine.builtins.base import BUILTIN_ERROR, EVAL_TYPE_ERROR, Builtin, BuiltinError
from policy_engine.builtins.catalog import CATALOG
from policy_engine.builtins.rego_types import Signature, parse_signature

__all__ = [
    "BUILTINS",
    "BUILTIN_ERROR",
    "EVAL_TYPE_ERROR",
    "Builtin",
    "BuiltinError",
    "signature",
]


@functools.cache
def _family(name: str) -> Mapping[str, Builtin]:
    """The entries of one family module, imported once per process (as any import is)."""
    module = importlib.import_module(f"{__name__}.{name}")
    return {entry.name: entry for entry in module.BUILTINS}


class _Registry(Mapping[str, Builtin]):
    """Read-only: every name of the catalog, each entry loaded with its family."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Builtin:
        family, _signature = CATALOG[name]
        entry = _family(family).get(name)
        if entry is None:
            raise RuntimeError(
                f"built-in `{name}` is in the catalog but not in family `{family}`: run "
                "`python -m policy_engine.tooling.builtins_catalog > "
                "policy_engine/builtins/catalog.py`"
            )
        return entry

    def get(self, name: str, default: Any = None) -> Any:
        # Without raising KeyError for a miss: the compiler asks for `==`, `in`
        # and policy functions too, once per call site.
        return self[name] if name in CATALOG else default

    def __contains__(self, name: object) -> bool:
        return name in CATALOG

    def __iter__(self) -> Iterator[str]:
        return iter(CATALOG)

    def __len__(self) -> int:
        return len(CATALOG)


BUILTINS: Final[Mapping[str, Builtin]] = _Registry()


@functools.cache
def signature(name: str) -> Signature | None:
    """OPA's declared types of built-in `name` (None if there is no such built-in).

    Read from the catalog, so asking does not import the family.
    """
    found = CATALOG.get(name)
    return None if found is None else parse_signature(found[1])
