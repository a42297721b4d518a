"""Unit built-ins: units.parse (SI and binary suffixes) and units.parse_bytes.

`units.parse("500m")` is 0.5 (lower-case `m` is milli, `M` mega; other
suffixes ignore case); `units.parse_bytes("1.1KiB")` is 1126 (bytes are
whole: the fraction is cut off). Both accept a value wrapped in double quotes.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Final

from policy_engine.builtins.base import BUILTIN_ERROR, Builtin, BuiltinError, builtin, want_string
from policy_engine.values import EXACT_CONTEXT, normalize_number

__all__ = ["BUILTINS"]

_SPLIT: Final = re.compile(r"([0-9.]*)(.*)", re.DOTALL)
_DECIMAL_POWERS: Final = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_NUMBER: Final = re.compile(r"[0-9]*\.?[0-9]*")


def _multiplier(suffix: str, milli: bool) -> Decimal | None:
    """The factor a suffix stands for: `k` 1000, `ki` 1024, ... ; None when unknown."""
    if milli and suffix == "m":
        return Decimal("0.001")
    lowered = suffix.lower()
    if lowered.endswith("i") and lowered[:-1] in _DECIMAL_POWERS and lowered != "i":
        return Decimal(1024) ** _DECIMAL_POWERS[lowered[:-1]]
    if lowered in _DECIMAL_POWERS:
        return Decimal(1000) ** _DECIMAL_POWERS[lowered]
    return None


def _parse(name: str, what: str, value: object, milli: bool) -> Decimal:
    text = want_string(name, 1, value)
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    if " " in text:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: spaces not allowed in resource strings")
    match = _SPLIT.fullmatch(text)
    assert match is not None  # the pattern matches every string
    digits, suffix = match.group(1), match.group(2)
    if not milli and suffix.lower().endswith("b"):
        suffix = suffix[:-1]
    if digits == "":
        raise BuiltinError(BUILTIN_ERROR, f"{name}: no {what} provided")
    factor = _multiplier(suffix, milli)
    if factor is None:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: {what} has unknown unit {suffix!r}")
    try:
        if not _NUMBER.fullmatch(digits) or digits == ".":
            raise InvalidOperation
        number = Decimal(digits)
    except InvalidOperation:
        raise BuiltinError(BUILTIN_ERROR, f"{name}: could not parse {what} to a number") from None
    return EXACT_CONTEXT.multiply(number, factor)


def parse(value: object) -> int | Decimal:
    """The number a resource quantity such as "500m", "2Gi" or "1.5K" stands for."""
    return normalize_number(_parse("units.parse", "amount", value, milli=True))


def parse_bytes(value: object) -> int:
    """The whole number of bytes in a size such as "10KB", "3MiB" or "1.5gb"."""
    amount = _parse("units.parse_bytes", "byte amount", value, milli=False)
    return int(amount.to_integral_value(rounding=ROUND_DOWN))


BUILTINS: tuple[Builtin, ...] = (
    builtin("units.parse", parse, "(x: string) -> number", 'units.parse("500m")'),
    builtin("units.parse_bytes", parse_bytes, "(x: string) -> number", 'units.parse_bytes("2MiB")'),
)
