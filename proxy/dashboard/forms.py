"""Reading dashboard form fields and presenting store records; no I/O here."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import get_args

from litestar.datastructures import FormMultiDict

from proxy.store.base import ApiKey, RuleType

__all__ = [
    "RULE_TYPES",
    "FormError",
    "KeyRow",
    "field",
    "key_row",
    "mask_secret",
    "parse_rule_values",
    "parse_usd",
    "usd",
]

RULE_TYPES: tuple[str, ...] = get_args(RuleType)
STATUS_LABELS = {"active": "Active", "inactive": "Inactive", "deleted": "Deleted"}
_CENT_PRECISION = Decimal("0.000001")


class FormError(ValueError):
    """A form field a person typed cannot be used; the message says how to fix it."""


def field(form: FormMultiDict, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def parse_usd(text: str, field_label: str, allow_empty: bool) -> Decimal | None:
    """A non-negative USD amount such as `25.00`; empty means none when allowed."""
    if not text:
        if allow_empty:
            return None
        raise FormError(f"{field_label}: enter an amount in USD such as `25.00`.")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise FormError(
            f"{field_label}: `{text}` is not an amount in USD; write it like `25.00`"
            + (", or leave it empty for no limit." if allow_empty else ".")
        ) from None
    if not amount.is_finite() or amount < 0:
        raise FormError(f"{field_label}: `{text}` must be zero or a positive amount in USD.")
    return amount


def parse_rule_values(rule_type: str, text: str) -> tuple[RuleType, tuple[str, ...]]:
    if rule_type not in RULE_TYPES:
        raise FormError(
            f"Rule type: `{rule_type}` is unknown; choose one of {', '.join(RULE_TYPES)}."
        )
    values = tuple(v for v in re.split(r"[\s,]+", text) if v)
    if not values:
        raise FormError("Rule values: enter at least one value, separated by commas or spaces.")
    return rule_type, values  # type: ignore[return-value]  # checked against RULE_TYPES above


def usd(amount: Decimal | None) -> str:
    """`$1.50`, `$0.000123`: at least cents, more digits only when they carry value."""
    if amount is None:
        return "no limit"
    text = f"{amount.quantize(_CENT_PRECISION):f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def mask_secret(source: dict[str, str]) -> str:
    """How a project's provider key is shown: the variable name, or the last four only."""
    if "env" in source:
        return f"from environment variable {source['env']}"
    secret = source.get("value", "")
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"stored value ••••{tail}"


class KeyRow:
    """One key as the pages show it."""

    def __init__(self, key: ApiKey) -> None:
        self.id = key.id
        self.project_id = key.project_id
        self.description = key.description
        self.display = key.display
        self.status = key.status
        self.status_label = STATUS_LABELS[key.status]
        self.usage = usd(key.usage)
        self.usage_limit = usd(key.usage_limit)
        self.usage_limit_input = "" if key.usage_limit is None else f"{key.usage_limit:f}"
        self.bar_percent = _bar_percent(key.usage, key.usage_limit)
        self.created_at = key.created_at


def key_row(key: ApiKey) -> KeyRow:
    return KeyRow(key)


def _bar_percent(usage: Decimal, limit: Decimal | None) -> int | None:
    if limit is None:
        return None
    if limit <= 0:
        return 100
    return int(min(Decimal(100), usage * 100 / limit))
