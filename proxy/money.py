"""Money as people type it and read it back: exact decimals, always in plain digits.

`Decimal("1e3")` is exactly 1000, but `str()` of it is `1E+3`, and a tiny cost such
as `Decimal("0.00000012")` prints as `1.2E-7`: every surface (CLI text and JSON, the
admin API, the dashboard, the audit log) shows money through `money_text`, and every
amount typed in is stored through `plain_digits`, so no exponent is shown back.
"""

from __future__ import annotations

from decimal import Context, Decimal

__all__ = ["money_text", "optional_money_text", "plain_digits"]


def plain_digits(amount: Decimal) -> Decimal:
    """`1e3` as `1000` (the same number): a positive exponent would be stored and shown
    back as `1E+3`. Other amounts are returned as they are."""
    _sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or exponent <= 0:
        return amount
    # Precision for every digit, so `1e400` is written out rather than refused.
    return amount.quantize(Decimal(1), context=Context(prec=len(digits) + exponent))


def money_text(amount: Decimal) -> str:
    """The amount in plain decimal digits, every stored digit kept: `1000`, `10.00`,
    `0.00000012` (never `1E+3` or `1.2E-7`)."""
    return f"{amount:f}"


def optional_money_text(amount: Decimal | None) -> str | None:
    """`money_text`, or None for no amount (no limit)."""
    return None if amount is None else money_text(amount)
