"""The Rego value model: how policy values are represented in Python.

| Rego    | Python                                                         |
|---------|----------------------------------------------------------------|
| null    | `None`                                                         |
| boolean | `bool` (never a number, although Python thinks `True == 1`)    |
| number  | `int` or `decimal.Decimal`, never `float`                      |
| string  | `str`                                                          |
| array   | `tuple` (engine-made) or `list` (input, data)                  |
| object  | `dict`, or the hashable `FrozenDict` inside sets and keys       |
| set     | `frozenset` of frozen values                                   |

Python's own `==` is wrong for Rego in a few places (`True == 1`,
`(1,) != [1]`), so the engine compares with `equal` and orders with
`compare` / `sort_key`. Arithmetic on decimals goes through `EXACT_CONTEXT`
(+ - *, exact to 1,000 digits) and `DECIMAL_CONTEXT` (division, 34 digits), so results never
depend on the thread's current decimal context.

Python sets and dicts hash `True` and `1` alike (and `False` and `0`). Lookups
are exact: `index_value` and membership confirm a hit with `equal` when the key
could be confused (`confusable`), so `1 in {true}` is false and `{1: "a"}[true]`
undefined. Known limit: a set or object *built* from both `true` and `1` keeps
only one of them; policies practically never mix them (docs/opa-differences.md).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, NoReturn

import msgspec

__all__ = [
    "DECIMAL_CONTEXT",
    "EXACT_CONTEXT",
    "UNDEFINED",
    "FrozenDict",
    "Undefined",
    "compare",
    "confusable",
    "equal",
    "freeze",
    "from_json",
    "holds_exactly",
    "int_text",
    "is_number",
    "normalize_number",
    "sort_key",
    "thaw",
    "to_json_text",
    "to_json_value",
    "type_name",
]


class Undefined:
    """The type of `UNDEFINED`: a value that does not exist (not `null`, not `false`)."""

    __slots__ = ()
    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        # INVARIANT: exactly one instance, so `is UNDEFINED` is the test.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        # Undefined is never truthy; a stray `if value:` must not treat it as a value.
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()

# Addition, subtraction and multiplication are exact up to 1,000 significant
# digits (money needs a few dozen; the cap stops `1e999999999 + 1` from
# building a billion-digit number). Division rounds at 34 significant digits
# (IEEE decimal128). Both contexts are used through their methods only, never
# installed as the thread's context; the sticky flags they record are never read.
EXACT_CONTEXT: Final = decimal.Context(
    prec=1000,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
DECIMAL_CONTEXT: Final = decimal.Context(
    prec=34,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

# Integral Decimals bigger than this many digits stay Decimal: turning
# `1e999999` into an int would build a million-digit number.
_MAX_INT_DIGITS: Final = 400
# Ints up to this many bits have fewer than 4,300 digits, Python's str() limit.
_SAFE_STR_BITS: Final = 14_000


class FrozenDict(dict[Any, Any]):
    """A dict that can be a set member or an object key: immutable, hash cached."""

    __slots__ = ("_hash",)

    _hash: int

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            self._hash = hash(frozenset(self.items()))
            return self._hash

    def _immutable(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("FrozenDict is immutable")

    __setitem__ = _immutable
    __delitem__ = _immutable
    clear = _immutable
    pop = _immutable
    popitem = _immutable
    setdefault = _immutable
    update = _immutable
    __ior__ = _immutable

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[Any, Any]]]:
        return (FrozenDict, (dict(self),))


# Rank of each type in Rego's total order; also what `type_name` reports.
_NULL, _BOOL, _NUMBER, _STRING, _ARRAY, _OBJECT, _SET = range(7)
_TYPE_NAMES: Final = ("null", "boolean", "number", "string", "array", "object", "set")
_RANK_BY_TYPE: Final[Mapping[type, int]] = {
    type(None): _NULL,
    bool: _BOOL,
    int: _NUMBER,
    Decimal: _NUMBER,
    float: _NUMBER,
    str: _STRING,
    tuple: _ARRAY,
    list: _ARRAY,
    dict: _OBJECT,
    FrozenDict: _OBJECT,
    frozenset: _SET,
    set: _SET,
}


# Types whose Python `==` and `<` already are Rego's (when both sides share the type).
_PLAIN_SCALARS: Final = frozenset({str, int, bool, Decimal})
_EXACT_NUMBERS: Final = frozenset({int, Decimal})


def _rank(value: object) -> int:
    rank = _RANK_BY_TYPE.get(type(value))
    if rank is not None:
        return rank
    return _rank_of_subclass(value)


def _rank_of_subclass(value: object) -> int:
    for kind, rank in _RANK_BY_TYPE.items():
        if kind is not type(None) and isinstance(value, kind):
            return rank
    raise TypeError(f"not a policy value: {type(value).__name__}")


def type_name(value: object) -> str:
    """Rego's name for the type of `value`: "null", "boolean", "number", ..."""
    return _TYPE_NAMES[_rank(value)]


def is_number(value: object) -> bool:
    """True for int and Decimal (and stray floats), false for booleans."""
    kind = type(value)
    return kind is int or kind is Decimal or kind is float


def normalize_number(number: Decimal) -> int | Decimal:
    """An integral Decimal becomes int (unless astronomically large); others lose trailing zeros."""
    if not number.is_finite():
        return number
    if number.adjusted() < _MAX_INT_DIGITS:
        as_int = int(number)  # truncates; equal only when the value is integral
        if as_int == number:
            return as_int
    elif number == number.to_integral_value():  # rounding mode cannot change this test
        return number
    return number.normalize(EXACT_CONTEXT)


def int_text(number: int) -> str:
    """Decimal digits of any int; Python refuses `str()` past 4,300 digits, Decimal does not."""
    if number.bit_length() < _SAFE_STR_BITS:
        return str(number)
    return format(Decimal(number), "f")


def _float_to_decimal(number: float) -> int | Decimal:
    # The shortest repr is what the JSON text said: 0.1 stays 0.1, not 0.1000000000000000055.
    return normalize_number(Decimal(repr(number)))


def _as_exact(number: object) -> Any:
    return _float_to_decimal(number) if type(number) is float else number


# ---------------------------------------------------------------- equality


def equal(a: object, b: object) -> bool:
    """Rego equality: types must match (true != 1), numbers by value, arrays by elements."""
    kind = type(a)
    if kind is type(b) and kind in _PLAIN_SCALARS:
        return bool(a == b)  # the common case: two strings, two ints, ...
    if a is b:
        return True
    rank = _rank(a)
    if rank != _rank(b):
        return False
    if rank == _NUMBER:
        return bool(_as_exact(a) == _as_exact(b))
    if rank <= _STRING:
        return a == b
    if rank == _ARRAY:
        return _equal_arrays(a, b)  # type: ignore[arg-type]
    if rank == _OBJECT:
        return _equal_objects(a, b)  # type: ignore[arg-type]
    return _equal_sets(a, b)  # type: ignore[arg-type]


def _equal_arrays(
    a: tuple[object, ...] | list[object], b: tuple[object, ...] | list[object]
) -> bool:
    return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))


def _equal_objects(a: Mapping[object, object], b: Mapping[object, object]) -> bool:
    if len(a) != len(b):
        return False
    if not all(type(key) is str for key in a):
        # Python would look key `true` up as `1`; compare the keys the Rego way.
        return sort_key(a) == sort_key(b)
    for key, value in a.items():
        other = b.get(key, UNDEFINED)
        if other is UNDEFINED or not equal(value, other):
            return False
    return True


def _equal_sets(a: frozenset[object], b: frozenset[object]) -> bool:
    # Rego-equal frozen values are always Python-equal, so a Python mismatch is
    # final; a Python match is confirmed unless every member is a string
    # (Python also matches `true` with `1`).
    if len(a) != len(b) or a != b:
        return False
    return all(type(member) is str for member in a) or sort_key(a) == sort_key(b)


def confusable(value: object) -> bool:
    """Whether Python's `==` could match `value` with a different Rego value
    (`true`/`1`, `false`/`0`, also inside arrays, objects and sets)."""
    kind = type(value)
    if kind is str or value is None:
        return False
    if kind is bool:
        return True
    if kind is int or kind is Decimal or kind is float:
        return value == 0 or value == 1
    if kind is tuple or kind is list:
        return any(confusable(item) for item in value)  # type: ignore[attr-defined]
    if isinstance(value, dict):
        return any(confusable(k) or confusable(v) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return any(confusable(member) for member in value)
    return False


def holds_exactly(stored: Iterable[object], key: object) -> bool:
    """Whether one of `stored` (a dict's keys, a set's members) is Rego-equal to `key`.

    For confirming a Python hit when `confusable(key)`: scans, so only then.
    """
    return any(equal(item, key) for item in stored)


# ---------------------------------------------------------------- ordering


def compare(a: object, b: object) -> int:
    """Rego's total order as -1, 0 or 1.

    null < booleans < numbers < strings < arrays < objects < sets.
    """
    kind_a, kind_b = type(a), type(b)
    if (kind_a is kind_b and kind_a in _PLAIN_SCALARS) or (
        kind_a in _EXACT_NUMBERS and kind_b in _EXACT_NUMBERS
    ):
        return -1 if a < b else (1 if a > b else 0)  # type: ignore[operator]
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if rank_a == _NULL:
        return 0
    if rank_a <= _STRING:
        x, y = _as_exact(a), _as_exact(b)
        return -1 if x < y else (1 if x > y else 0)
    key_a, key_b = sort_key(a), sort_key(b)
    return -1 if key_a < key_b else (1 if key_a > key_b else 0)


def sort_key(value: object) -> tuple[Any, ...]:
    """A key for `sorted` that orders values like Rego's `compare`."""
    rank = _rank(value)
    if rank == _NULL:
        return (_NULL,)
    if rank == _NUMBER:
        return (_NUMBER, _as_exact(value))
    if rank <= _STRING:
        return (rank, value)
    if rank == _ARRAY:
        return (_ARRAY, tuple(sort_key(item) for item in value))  # type: ignore[attr-defined]
    if rank == _OBJECT:
        # Objects compare by their sorted keys, each key followed by its value.
        pairs = sorted((sort_key(k), sort_key(v)) for k, v in value.items())  # type: ignore[attr-defined]
        return (_OBJECT, tuple(pairs))
    return (_SET, tuple(sorted(sort_key(member) for member in value)))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- conversions


def freeze(value: object) -> Any:
    """The hashable form: arrays become tuples, objects FrozenDicts, floats Decimals."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None or kind is Decimal:
        return value
    if kind is FrozenDict or kind is frozenset:
        return value  # INVARIANT: only ever built from frozen members.
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    if isinstance(value, dict):
        return FrozenDict((freeze(k), freeze(v)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(member) for member in value)
    if kind is float:
        return _float_to_decimal(value)  # type: ignore[arg-type]
    return value


def thaw(value: object) -> Any:
    """The public API form: arrays as list, objects as dict; sets stay frozenset."""
    if isinstance(value, (tuple, list)):
        return [thaw(item) for item in value]
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    return value


def from_json(value: Any) -> Any:
    """Replace every float by its exact Decimal; returns the same object when there is none."""
    kind = type(value)
    if kind is float:
        return _float_to_decimal(value)
    if kind is list or kind is tuple:
        converted = [from_json(item) for item in value]
        if all(new is old for new, old in zip(converted, value, strict=True)):
            return value
        return converted if kind is list else tuple(converted)
    if kind is dict:
        changed = {k: from_json(v) for k, v in value.items()}
        if all(changed[k] is v for k, v in value.items()):
            return value
        return changed
    return value


# ---------------------------------------------------------------- JSON text

_JSON_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")
# Go's encoding/json (and so OPA's json.marshal) escapes these for safe embedding in HTML.
_GO_ESCAPES: Final = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def to_json_text(value: object) -> str:
    """Compact JSON like OPA's json.marshal: sorted keys, sets as sorted arrays, exact decimals."""
    encoded = _JSON_ENCODER.encode(to_json_value(value))
    for raw, escaped in _GO_ESCAPES:
        if raw in encoded:
            encoded = encoded.replace(raw, escaped)
    return encoded.decode()


def to_json_value(value: object) -> Any:
    """The value as OPA's JSON view: sets as sorted lists, non-string keys as JSON text.

    Numbers stay int/Decimal; this is what result sets are compared against in
    OPA's conformance cases (`want_result`).
    """
    rank = _rank(value)
    if rank == _NUMBER:
        return _plain_number(value)
    if rank <= _STRING:
        return value
    if rank == _ARRAY:
        return [to_json_value(item) for item in value]  # type: ignore[attr-defined]
    if rank == _SET:
        return [to_json_value(member) for member in _sorted_values(value)]  # type: ignore[arg-type]
    items = sorted(((_json_key(k), v) for k, v in value.items()), key=_first)  # type: ignore[attr-defined]
    return {key: to_json_value(v) for key, v in items}


def _first(pair: tuple[str, object]) -> str:
    return pair[0]


def _plain_number(number: object) -> int | Decimal:
    exact: int | Decimal = _as_exact(number)
    if isinstance(exact, Decimal) and not exact.is_finite():
        raise ValueError(f"{exact} cannot be written as JSON")
    if isinstance(exact, int) and exact.bit_length() >= _SAFE_STR_BITS:
        return Decimal(exact)  # the encoder writes a Decimal's digits without str(int)
    return exact


def _json_key(key: object) -> str:
    # OPA turns a non-string key into the JSON text of that key.
    return key if isinstance(key, str) else to_json_text(key)


def _sorted_values(values: Iterable[object]) -> list[object]:
    return sorted(values, key=sort_key)
