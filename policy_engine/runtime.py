"""What compiled policies use while they run: the evaluation context and value helpers.

Compiled code is continuation-passing: a body step is
`step(ctx, frame, k) -> bool`; it calls `k(ctx, frame)` once per solution and
returns True as soon as a continuation asks to stop (first solution found).
`frame` is a plain list of variable slots for one rule or function call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import msgspec

from policy_engine.errors import LIMIT_ERROR, EvalError
from policy_engine.values import (
    UNDEFINED,
    FrozenDict,
    confusable,
    freeze,
    holds_exactly,
    sort_key,
)

__all__ = [
    "ARRAYS",
    "COLLECTIONS",
    "COLLECTION_TYPES",
    "DEFAULT_OPTIONS",
    "MISSING",
    "NOT_COLLECTIONS",
    "SETS",
    "Cont",
    "Ctx",
    "EvalOptions",
    "Frame",
    "Step",
    "ValueFn",
    "data_index",
    "in_order",
    "index_value",
    "iterate",
    "set_path",
]

Frame = list[Any]
Cont = Callable[["Ctx", Frame], bool]
Step = Callable[["Ctx", Frame, Cont], bool]
ValueFn = Callable[["Ctx", Frame], Any]


# isinstance with a tuple is much faster than with an `A | B` union on hot paths.
ARRAYS: Final = (list, tuple)
SETS: Final = (frozenset, set)
COLLECTIONS: Final = (dict, list, tuple, frozenset, set)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class EvalOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What one evaluation may read from outside its documents, passed per evaluation.

    Built-ins that depend on the world read these only (never a global): the
    clock (`time.now_ns`), the seed of `rand.intn` and `uuid.rfc4122`, and where
    `print` and `trace` write. Each value is fixed for the whole evaluation, as
    OPA fixes it per query.
    """

    now_ns: int | None = None
    """Nanoseconds since the Unix epoch; None reads the clock once, at first use."""
    seed: int | None = None
    """Seed of the evaluation's random numbers; None draws one from the system."""
    print_hook: Callable[[str], None] | None = None
    """Receives each `print(...)` line; None discards them (a decision never depends on print)."""
    trace_hook: Callable[[str], None] | None = None
    """Receives each `trace(note)`; None discards them."""


DEFAULT_OPTIONS: Final = EvalOptions()

_new_object: Final = object.__new__


class Ctx:
    """One evaluation: input, data, the per-evaluation rule cache, limits, overrides.

    `shared` holds the values of rules that read neither `input` nor `with`:
    the engine passes one list for every evaluation on its own data and
    configuration, so such rules are computed once per engine, not per request.
    Otherwise it is this evaluation's own `cache`.

    Both are lists indexed by rule id (ids run from 1 to `rules`), MISSING where a
    rule's value is not known yet: generated code reads and writes a slot with one
    subscript, where a dict cost a method call per read, an insertion per write and
    a resize or two as it grew.
    """

    __slots__ = (
        "cache",
        "data",
        "input",
        "memo",
        "options",
        "overrides",
        "shared",
        "steps",
        "strict",
    )

    def __init__(
        self,
        input_: Any,
        data: Any,
        steps: int,
        strict: bool = False,
        overrides: Mapping[tuple[str, ...], Any] | None = None,
        shared: list[Any] | None = None,
        options: EvalOptions = DEFAULT_OPTIONS,
        rules: int = 0,
    ) -> None:
        self.input = input_
        self.data = data
        self.cache: list[Any] = [MISSING] * (rules + 1)
        self.shared = self.cache if shared is None else shared
        self.steps = steps
        self.strict = strict
        self.overrides = overrides
        self.options = options
        # What world-reading built-ins fixed for this evaluation (the clock, random
        # draws); made on first use, so evaluations that read none do not pay for it.
        self.memo: dict[Any, Any] | None = None

    @staticmethod
    def fresh(
        input_: Any,
        data: Any,
        steps: int,
        strict: bool,
        shared: list[Any] | None,
        options: EvalOptions,
        blank: list[Any],
    ) -> Ctx:
        """`Ctx(input_, data, steps, strict, None, shared, options, len(blank) - 1)` for a
        prepared query's decision, without calling the class: a class call with an
        `__init__` costs about as much as the whole decision of a key the policy refuses
        first (the type call, then `__init__`'s own frame). Sets every slot `__init__`
        sets; the cache is a copy of `blank` (all MISSING)."""
        ctx = _new_object(Ctx)
        ctx.input = input_
        ctx.data = data
        cache = blank.copy()
        ctx.cache = cache
        ctx.shared = cache if shared is None else shared
        ctx.steps = steps
        ctx.strict = strict
        ctx.overrides = None
        ctx.options = options
        ctx.memo = None
        return ctx

    def child(self, input_: Any, data: Any, overrides: Mapping[tuple[str, ...], Any] | None) -> Ctx:
        """A context for a `with` modifier: same limits, fresh caches (data may differ).

        The clock and random draws stay the same as in the parent: one evaluation, one time.
        """
        ctx = Ctx(
            input_,
            data,
            steps=self.steps,
            strict=self.strict,
            overrides=overrides,
            options=self.options,
            rules=len(self.cache) - 1,
        )
        ctx.memo = self.fixed()
        return ctx

    def fixed(self) -> dict[Any, Any]:
        """This evaluation's memo of world-reading answers, shared with its `with` children."""
        memo = self.memo
        if memo is None:
            memo = self.memo = {}
        return memo

    def spend(self, amount: int = 1) -> None:
        self.steps -= amount
        if self.steps < 0:
            raise EvalError(
                LIMIT_ERROR,
                "evaluation step limit exceeded; raise `max_steps` in the engine "
                "configuration or simplify the policy",
            )


def data_index(collection: Any, key: Any) -> Any:
    """`collection[key]` on a reference into base data (`data.x[2]`), read as OPA reads its
    store: a path of strings, so a number finds the object key that is its text
    (`data.nested[2]` is `data.nested["2"]`) and a string of digits indexes an array
    (`data.arr["1"]`). A value held in a variable keeps Rego's semantics (`index_value`).
    """
    if type(collection) is dict:
        found = collection.get(key, UNDEFINED) if type(key) is str else index_value(collection, key)
        if found is UNDEFINED and type(key) is int:
            return collection.get(str(key), UNDEFINED)
        return found
    if type(key) is str and isinstance(collection, ARRAYS) and key.isascii() and key.isdigit():
        return index_value(collection, int(key))
    return index_value(collection, key)


# Values that are never indexable, tested by exact type: `isinstance` costs several times a
# set lookup for every type it does not match (a null walked into, `w.rpm` with `w :=
# null`, failed three of them).
NOT_COLLECTIONS: Final = frozenset({type(None), str, int, bool, float, Decimal, type(UNDEFINED)})
# The collections' own types, for the same exact-type test.
COLLECTION_TYPES: Final = frozenset({dict, FrozenDict, list, tuple, frozenset, set})


def index_value(collection: Any, key: Any) -> Any:
    """`collection[key]` with Rego semantics: UNDEFINED when absent or not indexable."""
    kind = type(collection)
    if kind in NOT_COLLECTIONS:
        return UNDEFINED
    if kind is dict or isinstance(collection, dict):
        if type(key) is float:
            key = freeze(key)
        try:
            found = collection.get(key, UNDEFINED)
        except TypeError:  # unhashable key (a list): look it up frozen
            key = freeze(key)
            found = collection.get(key, UNDEFINED)
        if found is not UNDEFINED and type(key) is not str and confusable(key):
            # Python finds key 1 under `true`: confirm the stored key is Rego-equal.
            return found if holds_exactly(collection, key) else UNDEFINED
        return found
    if kind is tuple or kind is list or isinstance(collection, ARRAYS):
        kind = type(key)
        if kind is int:
            if 0 <= key < len(collection):
                return collection[key]
            return UNDEFINED
        if kind is Decimal or kind is float:
            as_int = int(key)
            if as_int == key and 0 <= as_int < len(collection):
                return collection[as_int]
        return UNDEFINED
    if isinstance(collection, SETS):
        try:
            member = freeze(key)
            found = member in collection
        except TypeError:
            return UNDEFINED
        if found and confusable(member) and not holds_exactly(collection, member):
            return UNDEFINED
        return member if found else UNDEFINED
    return UNDEFINED


def iterate(collection: Any) -> Any:
    """(key, value) pairs of a collection; nothing for scalars."""
    if isinstance(collection, dict):
        return collection.items()
    if isinstance(collection, ARRAYS):
        return enumerate(collection)
    if isinstance(collection, SETS):
        return ((member, member) for member in collection)
    return ()


def in_order(collection: Any) -> Any:
    """An object or set to iterate as OPA does, in key order (as a dict; a set's members
    are their own keys); arrays, scalars and small collections as they are.

    Only an array comprehension shows the order of its iterations, so only its body
    iterates through this (see `TermCompiler.ordered`).
    """
    kind = type(collection)
    if kind in NOT_COLLECTIONS or kind is tuple or kind is list:
        return collection
    if not isinstance(collection, dict | frozenset | set) or len(collection) < 2:
        return collection
    if isinstance(collection, dict):
        keys = list(collection)
        ordered = sorted(keys) if all(type(k) is str for k in keys) else sorted(keys, key=sort_key)
        if ordered == keys:
            return collection
        return {key: collection[key] for key in ordered}
    members = list(collection)
    if all(type(m) is str for m in members):
        members.sort()
    else:
        members.sort(key=sort_key)
    return {member: member for member in members}


def set_path(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `document` with `value` at `path` (objects created on the way)."""
    if not path:
        return value
    base = dict(document) if isinstance(document, dict) else {}
    head, rest = path[0], path[1:]
    base[head] = set_path(base.get(head), rest, value)
    return FrozenDict(base) if isinstance(document, FrozenDict) else base
