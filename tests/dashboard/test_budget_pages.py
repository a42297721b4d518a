"""Period budgets on the dashboard's key and project pages: set one, see the current
window's usage and the time to its reset, clear it, and a bad one is explained."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from litestar import Litestar
from litestar.testing import TestClient

from proxy.budgets import rfc3339, time_zone, window
from proxy.store import Store
from proxy.store.base import Admitted, BudgetWindow, Claim

from .conftest import PROJECT, csrf_of, run


def _post(client: TestClient[Litestar], page: str, action: str, budget: str) -> object:
    return client.post(
        action,
        data={"budget": budget, "csrf_token": csrf_of(client, page)},
        follow_redirects=False,
    )


def test_a_key_budget_is_set_shown_with_its_window_and_cleared(
    signed_in: TestClient[Litestar], store: Store
) -> None:
    key, _ = run(store.create_key(PROJECT, None, "budgeted"))
    page = f"/dashboard/keys/{key.id}"
    assert "No period budget" in signed_in.get(page).text
    answer = _post(signed_in, page, f"{page}/budget", "5.00/day")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert run(store.get_key(key.id)).budget is not None

    async def spend() -> None:
        # One request settled in today's window (the dashboard alone reads the wall clock).
        start, _ = window("day", datetime.now(UTC), time_zone("UTC"))
        claim = Claim(
            key_id=key.id,
            organization_id=None,
            amount=Decimal("1"),
            key_budget=BudgetWindow(amount=Decimal("5.00"), start=rfc3339(start)),
        )
        outcome = await store.admit(claim, "t")
        assert isinstance(outcome, Admitted)
        await store.settle(outcome.reservation, Decimal("1.25"))

    run(spend())
    shown = signed_in.get(page).text
    assert 'id="budget-usage"' in shown and "$1.25 of $5.00" in shown
    assert "per day used" in shown and "resets at" in shown
    assert 'value="5.00/day"' in shown

    refused = _post(signed_in, page, f"{page}/budget", "5/fortnight")
    assert "hour, day, week, month" in refused.text  # type: ignore[attr-defined]
    assert _post(signed_in, page, f"{page}/budget", "").status_code == 303  # type: ignore[attr-defined]
    assert run(store.get_key(key.id)).budget is None


def test_a_project_budget_is_set_and_shown(signed_in: TestClient[Litestar], store: Store) -> None:
    page = f"/dashboard/projects/{PROJECT}"
    answer = _post(signed_in, page, f"{page}/budget", "100/month")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    shown = signed_in.get(page).text
    assert "$0.00 of $100.00" in shown and "per month used" in shown
    project = run(store.get_project(PROJECT))
    assert project.budget is not None and project.budget.period == "month"
