"""The reservation row an admission writes on SQLite: its key window, project window and
units are stored as given, or NULL when absent, whichever prebuilt statement variant
(`_RESERVATION_INSERTS`, NULL literals instead of bound Nones) wrote it."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from proxy.store.base import Admitted, BudgetWindow, Claim, RateLimits
from proxy.store.sqlite import _RESERVATION_INSERTS, SqliteStore, _units

KEY_WINDOW = "2026-12-07T00:00:00Z"
PROJECT_WINDOW = "2026-12-01T00:00:00Z"
AMOUNT = Decimal("0.0025")


def test_every_variant_inserts_the_same_nine_columns() -> None:
    assert set(_RESERVATION_INSERTS) == set(itertools.product((False, True), repeat=3))
    for present, statement in _RESERVATION_INSERTS.items():
        values = statement.split("VALUES (")[1].rstrip(")").split(", ")
        assert values[:6] == ["?"] * 6
        assert values[6:] == ["?" if bound else "NULL" for bound in present]


@pytest.mark.parametrize(
    ("key_budget", "project_budget", "controlled"),
    list(itertools.product((False, True), repeat=3)),
)
def test_the_row_holds_what_the_admission_had(
    tmp_path: Path, key_budget: bool, project_budget: bool, controlled: bool
) -> None:
    claim_fields: dict[str, Any] = {}
    if key_budget:
        claim_fields["key_budget"] = BudgetWindow(amount=Decimal("1000"), start=KEY_WINDOW)
    if project_budget:
        claim_fields["project_budget"] = BudgetWindow(amount=Decimal("1000"), start=PROJECT_WINDOW)
    if controlled:
        claim_fields["key_limits"] = RateLimits(rpm=10**6, tpm=10**9, max_parallel=10**6)
        claim_fields["tokens"] = 5

    async def body() -> tuple[Any, ...]:
        store = SqliteStore(str(tmp_path / "row.db"), reservation_ttl=100.0)
        await store.migrate()
        await store.ensure_defaults()
        await store.set_credits("default", Decimal("1000"))
        key, _ = await store.create_key("default", Decimal("5") if controlled else None, "row")
        try:
            claim = Claim(
                key_id=key.id,
                organization_id="default",
                amount=AMOUNT,
                project_id="default",
                **claim_fields,
            )
            admitted = await store.admit(claim, "tkt-row")
            assert isinstance(admitted, Admitted)
            row: tuple[Any, ...] = await store._run(
                lambda conn: conn.execute(
                    "SELECT id, key_id, org_id, amount, project_id, key_window, "
                    "project_window, units FROM reservations"
                ).fetchone()
            )
            assert row[:5] == (admitted.reservation.id, key.id, "default", "0.0025", "default")
            assert row[7] == admitted.reservation.units
            return row[5:]
        finally:
            await store.close()

    key_window, project_window, units = asyncio.run(body())
    assert key_window == (KEY_WINDOW if key_budget else None)
    assert project_window == (PROJECT_WINDOW if project_budget else None)
    # A key with a budget or controls reads its reserved figures, and so keeps them.
    assert units == (_units(AMOUNT) if key_budget or controlled else None)
