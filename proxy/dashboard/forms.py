"""Reading dashboard form fields and presenting store records; no I/O here."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import get_args

from litestar.datastructures import FormMultiDict

from proxy.money import plain_digits
from proxy.store.base import ApiKey, KeyActivity, RuleStatus, RuleType

__all__ = [
    "RULE_TYPES",
    "FormError",
    "KeyRow",
    "field",
    "key_row",
    "mask_secret",
    "parse_rule_status",
    "parse_rule_values",
    "parse_usd",
    "usd",
    "usd_exact",
]

RULE_TYPES: tuple[str, ...] = get_args(RuleType)
STATUS_LABELS = {"active": "Active", "inactive": "Inactive", "deleted": "Deleted"}
_CENT = Decimal("0.01")
# The smallest bar drawn for any usage above zero, in percent: visible, clearly small.
MIN_VISIBLE_BAR = 2.0


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
    return plain_digits(amount)


def parse_rule_values(rule_type: str, text: str) -> tuple[RuleType, tuple[str, ...]]:
    if rule_type not in RULE_TYPES:
        raise FormError(
            f"Rule type: `{rule_type}` is unknown; choose one of {', '.join(RULE_TYPES)}."
        )
    values = tuple(v for v in re.split(r"[\s,]+", text) if v)
    if not values:
        raise FormError("Rule values: enter at least one value, separated by commas or spaces.")
    return rule_type, values  # type: ignore[return-value]  # checked against RULE_TYPES above


def parse_rule_status(status: str) -> RuleStatus:
    if status not in ("active", "inactive"):
        raise FormError(f"Rule status: `{status}` is not one of `active`, `inactive`.")
    return "active" if status == "active" else "inactive"


def usd(amount: Decimal | None) -> str:
    """Money as people read it: `$1,234.50` from a cent up; below a cent two significant
    digits (`$0.0021`, `$0.000085`), so a small cost is neither `$0.00` nor a long tail."""
    if amount is None:
        return "no limit"
    sign = "-" if amount < 0 else ""
    size = abs(amount)
    if size == 0 or size >= _CENT:
        return f"{sign}${size.quantize(_CENT, rounding=ROUND_HALF_UP):,.2f}"
    digits = -size.adjusted() + 1  # two significant digits below the cent
    shown = size.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    if shown >= _CENT:  # 0.009999 rounds up to a cent
        return f"{sign}${_CENT}"
    return f"{sign}${f'{shown:f}'.rstrip('0')}"


def usd_exact(amount: Decimal | None) -> str:
    """Every digit stored, for a tooltip next to `usd`: `$0.0000853`."""
    if amount is None:
        return "no limit"
    text = f"{abs(amount):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{'-' if amount < 0 else ''}${text}"


def mask_secret(source: dict[str, str]) -> str:
    """How a project's provider key is shown: the variable name, or the last four only."""
    if "env" in source:
        return f"from environment variable {source['env']}"
    if "encrypted" in source:
        return "stored value (encrypted)"
    secret = source.get("value", "")
    tail = secret[-4:] if len(secret) >= 12 else ""
    return f"stored value ••••{tail}"


class KeyRow:
    """One key as the pages show it."""

    def __init__(self, key: ApiKey, activity: KeyActivity | None = None) -> None:
        self.id = key.id
        self.project_id = key.project_id
        self.description = key.description
        self.display = key.display
        self.status = key.status
        self.status_label = STATUS_LABELS[key.status]
        self.usage = usd(key.usage)
        self.usage_exact = usd_exact(key.usage)
        self.usage_limit = usd(key.usage_limit)
        self.usage_limit_input = "" if key.usage_limit is None else f"{key.usage_limit:f}"
        self.bar_percent = _bar_percent(key.usage, key.usage_limit)
        self.used_label = _used_label(key.usage, key.usage_limit)
        self.created_at = key.created_at
        self.expires_at = key.expires_at
        seen = activity or KeyActivity(key_id=key.id)
        self.last_used_at = seen.last_used_at
        self.requests = seen.requests
        self.prompt_tokens = seen.prompt_tokens
        self.completion_tokens = seen.completion_tokens


def key_row(key: ApiKey, activity: KeyActivity | None = None) -> KeyRow:
    return KeyRow(key, activity)


def _used_label(usage: Decimal, limit: Decimal | None) -> str:
    """`0.0085% of the usage limit used`: the true share, however small the bar."""
    if limit is None or limit <= 0:
        return "usage limit reached" if limit is not None else "no usage limit"
    share = usage * 100 / limit
    shown = "0" if share == 0 else f"{float(share):.2g}" if share < 1 else f"{share:.0f}"
    return f"{shown}% of the usage limit used"


def _bar_percent(usage: Decimal, limit: Decimal | None) -> float | None:
    """How much of the bar to fill; any usage above zero shows (MIN_VISIBLE_BAR at least)."""
    if limit is None:
        return None
    if limit <= 0:
        return 100.0
    percent = float(min(Decimal(100), usage * 100 / limit))
    return max(percent, MIN_VISIBLE_BAR) if usage > 0 else 0.0
