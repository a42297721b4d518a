"""Hypothesis strategies for documents described by a JSON Schema (the input schema).

Our own builder for the schema subset the gateway's schemas use (`$ref` into
`$defs`, `anyOf`/`oneOf`, `enum`, `const`, `type`, `properties`/`required`,
`items`, `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`,
`pattern`, `format`), rather than hypothesis-jsonschema, because it must aim
at what breaks policies:

- `format: decimal` strings (and strings whose `pattern` accepts most of
  the amounts in `DECIMAL_POOL`) are often one amount shared by the whole
  document, else from a small pool of amounts written in several ways
  (`"10"`, `"10.00"`), so equal amounts such as `usage == usage_limit` turn
  up often;
- free strings come mostly from a *dictionary*: the string constants of the
  policies and the data (model ids, provider names, operation names), so a
  generated request names a real catalog model; and mostly from a few words
  shared by the whole document, so a rule's values name the requested model;
- an optional property with a `default` is always present, as the proxy
  always fills defaults in; other optional properties may be absent.

Shrinking goes towards the first pool entry, so counterexamples read simply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

__all__ = ["DECIMAL_POOL", "dictionary_of", "schema_strategy"]

DECIMAL_POOL = ("0", "0.00", "10", "10.00", "9.99", "-1.50")
"""Amounts to draw from; the same value written two ways makes ties likely."""

_MAX_ITEMS = 3
_MAX_DEPTH = 12


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,39}\Z")


def dictionary_of(values: Iterable[Any], limit: int = 400) -> list[str]:
    """Identifier-like strings found in `values` (keys included), sorted, at most `limit`.

    Ids, names and enum-like constants, not prose: messages and URLs would
    only dilute the draws.
    """
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if _WORD.match(value) and "//" not in value:
                found.add(value)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)

    for value in values:
        walk(value)
    return sorted(found)[:limit]


def _decimal_strings() -> st.SearchStrategy[str]:
    amounts = st.decimals(
        min_value=Decimal("-100"), max_value=Decimal("100000"), places=2, allow_nan=False
    )
    pool = st.sampled_from(DECIMAL_POOL)
    # One amount shared by every decimal field of a document: ties between
    # fields (usage == usage_limit) are what limit checks get wrong; half the
    # draws take the shared amount.
    shared = st.shared(pool, key="policy_engine.tooling.schema_strategy.decimal")
    return _weighted([(2, shared), (1, pool), (1, amounts.map(lambda d: format(d, "f")))])


_RFC3339_UTC = "%Y-%m-%dT%H:%M:%SZ"


def _date_time_strings(local_words: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """RFC 3339 UTC times. Expiry checks go wrong at the tie, so, as with amounts, half the
    draws share one time per document and many are a second away from it; near a seed,
    the times are mostly the seed's own times or a second away from one of them."""
    moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda t: t.replace(microsecond=0)
    )
    local = [t for t in map(_parsed_time, local_words) if t is not None]
    if local:
        moments = _weighted([(3, st.sampled_from(local)), (1, moments)])
    shared = st.shared(moments, key="policy_engine.tooling.schema_strategy.date-time")
    near = st.tuples(_weighted([(1, shared), (1, moments)]), st.sampled_from((-1, 1))).map(
        lambda pair: pair[0] + timedelta(seconds=pair[1])
    )
    return _weighted([(2, shared), (2, near), (1, moments)]).map(lambda t: t.strftime(_RFC3339_UTC))


def _parsed_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _RFC3339_UTC)
    except ValueError:
        return None


def _weighted(options: Sequence[tuple[int, st.SearchStrategy[Any]]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each `weight` times as likely; shrinks towards the first.

    (`one_of` cannot weight: it merges equal branches.)
    """
    slots = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(slots) - 1).flatmap(lambda i: slots[i])


def _free_strings(
    dictionary: Sequence[str], local_words: Sequence[str] = ()
) -> st.SearchStrategy[str]:
    text = st.text(max_size=12)
    if not dictionary:
        return text
    words = st.sampled_from(list(dictionary))
    paired = st.builds(lambda a, b: f"{a}/{b}", words, words)
    local: st.SearchStrategy[str]
    if local_words:
        # Near a seed: mostly the seed's own strings (its model, its providers).
        near = st.sampled_from(list(local_words))
        return _weighted([(6, near), (1, words), (1, paired), (1, text)])
    else:
        # A few words shared by the whole document, so that fields name the
        # same thing: the requested model is often the one a rule lists.
        vocabulary = st.shared(
            st.lists(st.one_of(words, paired), min_size=1, max_size=4, unique=True),
            key="policy_engine.tooling.schema_strategy.vocabulary",
        )
        local = vocabulary.flatmap(st.sampled_from)
    return _weighted([(3, local), (1, words), (1, paired), (1, text)])


class _Builder:
    def __init__(
        self, root: Mapping[str, Any], dictionary: Sequence[str], local_words: Sequence[str] = ()
    ) -> None:
        self.root = root
        self.dictionary = dictionary
        self.local_words = local_words

    def resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local `$ref`s are supported, not `{ref}`")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        if not isinstance(node, Mapping):
            raise ValueError(f"`{ref}` does not point at a schema")
        return node

    def build(self, schema: Mapping[str, Any] | bool, depth: int = 0) -> st.SearchStrategy[Any]:
        if schema is True or schema == {}:
            return st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                _free_strings(self.dictionary, self.local_words),
            )
        if schema is False or depth > _MAX_DEPTH:
            return st.nothing()
        assert isinstance(schema, Mapping)
        if "$ref" in schema:
            return self.build(self.resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(list(schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.choice(schema[key], depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.build({**schema, "type": k}, depth) for k in kind])
        return self.typed(schema, kind, depth)

    def choice(self, options: Sequence[Any], depth: int) -> st.SearchStrategy[Any]:
        """One of the options; `null` one time in four when the others are objects.

        A null document takes one path through a policy, an object many, so
        the object branches get most draws.
        """
        nulls = [o for o in options if isinstance(o, Mapping) and o.get("type") == "null"]
        rest = [o for o in options if o not in nulls]
        others = [self.build(o, depth + 1) for o in rest]
        objects = [o for o in rest if isinstance(o, Mapping) and ("$ref" in o or "properties" in o)]
        if not nulls or not objects:
            return st.one_of([self.build(o, depth + 1) for o in options])
        return _weighted([(3, st.one_of(others)), (1, st.none())])

    def typed(self, schema: Mapping[str, Any], kind: Any, depth: int) -> st.SearchStrategy[Any]:
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return st.integers(schema.get("minimum"), schema.get("maximum"))
        if kind == "number":
            return st.decimals(
                schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
            )
        if kind == "string":
            return self.string(schema)
        if kind == "array":
            items = self.build(schema.get("items", True), depth + 1)
            low = schema.get("minItems", 0)
            return st.lists(items, min_size=low, max_size=schema.get("maxItems", low + _MAX_ITEMS))
        if kind == "object" or "properties" in schema:
            return self.object(schema, depth)
        return self.build(True, depth)

    def string(self, schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
        if schema.get("format") == "decimal":
            return _decimal_strings()
        if "pattern" in schema:
            pattern = re.compile(schema["pattern"])
            if sum(bool(pattern.fullmatch(a)) for a in DECIMAL_POOL) >= 3:
                # A decimal-string pattern: amounts (with their ties) that fit it.
                return _decimal_strings().filter(lambda a: bool(pattern.fullmatch(a)))
            return st.from_regex(pattern, fullmatch=True)
        if schema.get("format") == "date-time":
            return _date_time_strings(self.local_words)
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if low == 0 and high is None:
            return _free_strings(self.dictionary, self.local_words)
        return _free_strings(self.dictionary, self.local_words).filter(
            lambda s: len(s) >= low and (high is None or len(s) <= high)
        )

    def object(self, schema: Mapping[str, Any], depth: int) -> st.SearchStrategy[Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        always: dict[str, st.SearchStrategy[Any]] = {}
        maybe: dict[str, st.SearchStrategy[Any]] = {}
        for name, sub in properties.items():
            strategy = self.build(sub, depth + 1)
            has_default = isinstance(sub, Mapping) and "default" in sub
            (always if name in required or has_default else maybe)[name] = strategy
        return st.fixed_dictionaries(always, optional=maybe)


class _Mutator(_Builder):
    """Documents close to a seed document: each part kept, or now and then drawn anew."""

    def mutate(self, schema: Any, value: Any, depth: int = 0) -> st.SearchStrategy[Any]:
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return st.just(value)
        if "$ref" in schema:
            return self.mutate(self.resolve(schema["$ref"]), value, depth + 1)
        fresh = self.build(schema, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                kind = "null" if value is None else "object" if isinstance(value, Mapping) else ""
                for option in schema[key]:
                    resolved = self.resolve(option["$ref"]) if "$ref" in option else option
                    if kind and (
                        resolved.get("type") == kind
                        or (kind == "object" and "properties" in resolved)
                    ):
                        return self.mutate(resolved, value, depth + 1)
                return _weighted([(_KEEP, st.just(value)), (1, fresh)])
        if isinstance(value, Mapping) and "properties" in schema:
            properties: Mapping[str, Any] = schema["properties"]
            parts = {
                k: self.mutate(properties.get(k, True), v, depth + 1) for k, v in value.items()
            }
            return st.fixed_dictionaries(parts)
        if isinstance(value, list):
            items = schema.get("items", True)
            kept = st.tuples(*(self.mutate(items, v, depth + 1) for v in value)).map(list)
            grown = st.lists(self.build(items, depth + 1), min_size=1, max_size=_MAX_ITEMS)
            return _weighted([(2, kept), (1, grown)])  # lists are where new rules come in
        return _weighted([(_KEEP, st.just(value)), (1, fresh)])


_KEEP = 24
"""A seed's scalar is kept 24 times in 25: a seed has about 30 scalars, so an input near
it changes one or two things (more, and reaching a narrow corner of the policy gets rare)."""


def _strings_in(value: Any) -> list[str]:
    """The string values (not keys) of a document, sorted."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return sorted(found)


def schema_strategy(
    schema: Mapping[str, Any], dictionary: Sequence[str] = (), seeds: Sequence[Any] = ()
) -> st.SearchStrategy[Any]:
    """Documents valid under `schema`, biased towards `dictionary` strings and equal amounts.

    With `seeds` (example documents), three inputs in four are a seed with a
    few parts drawn anew, their free strings mostly taken from that seed: the
    way to reach inputs that pass many checks at once, which random documents
    almost never do.
    """
    fresh = _Builder(schema, dictionary).build(schema)
    if not seeds:
        return fresh
    near = [_Mutator(schema, dictionary, _strings_in(seed)).mutate(schema, seed) for seed in seeds]
    return _weighted([(1, fresh), (3, st.one_of(near))])
