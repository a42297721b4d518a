"""Hypothesis strategies producing policy values in every representation the engine accepts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from policy_engine.values import freeze, normalize_number

numbers = st.integers(min_value=-(10**20), max_value=10**20) | st.decimals(
    min_value=Decimal("-1e9"),
    max_value=Decimal("1e9"),
    allow_nan=False,
    allow_infinity=False,
    places=4,
).map(normalize_number)

scalars = st.none() | st.booleans() | numbers | st.text(max_size=6)


def _composites(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
        | st.frozensets(children.map(freeze), max_size=4)
    )


values = st.recursive(scalars, _composites, max_leaves=12)

# JSON-shaped values (no sets, string keys), as `input` and `data` arrive.
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
