"""Period budgets in the store (issue 13 point 1) on every backend: a window's settled
usage refuses, its in-flight reservations make a request wait, a new window starts at
zero, a project budget holds across its keys, the exact-N burst holds for a budget
(also across two instances sharing the database), and window usage reaches PostgreSQL
through the Redis ledger's flush."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

from store_backends import Backend

from proxy.admission import Admission
from proxy.store import Store
from proxy.store.base import Admitted, BudgetWindow, Claim, Queued, Refused, Reservation

DAY_1 = "2027-03-01T00:00:00Z"
DAY_2 = "2027-03-02T00:00:00Z"
CENT = Decimal("0.01")


async def _project_with_keys(store: Store, keys: int = 1) -> tuple[str, list[str]]:
    suffix = secrets.token_hex(5)
    await store.create_organization(f"org-{suffix}", Decimal("10.00"))
    await store.create_project(f"proj-{suffix}", f"org-{suffix}", "credits")
    ids = []
    for _ in range(keys):
        key, _ = await store.create_key(f"proj-{suffix}", None, "budget test")
        ids.append(key.id)
    return f"proj-{suffix}", ids


def _key_claim(key_id: str, budget: str, window: str, amount: Decimal = CENT) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id=None,
        amount=amount,
        key_budget=BudgetWindow(amount=Decimal(budget), start=window),
    )


def _project_claim(key_id: str, project_id: str, budget: str, window: str) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id=None,
        amount=CENT,
        project_id=project_id,
        project_budget=BudgetWindow(amount=Decimal(budget), start=window),
    )


def _run(backend: Backend, body: object) -> None:
    async def wrapped() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await body(store)  # type: ignore[operator]
        finally:
            await store.close()

    backend.run(wrapped)


def test_a_key_window_waits_on_in_flight_refuses_on_settled_and_resets(backend: Backend) -> None:
    async def body(store: Store) -> None:
        _, (key_id,) = await _project_with_keys(store)
        big = _key_claim(key_id, "0.02", DAY_1, amount=Decimal("5.00"))
        first = await store.admit(big, "t1")
        assert isinstance(first, Admitted)
        assert first.reservation.key_window == DAY_1
        # Only the in-flight reservation stands in the way: wait, do not refuse.
        assert isinstance(await store.admit(big, "t2"), Queued)
        usage, _ = await store.budget_usage((key_id, DAY_1), None)
        assert usage.reserved == Decimal("5.00")
        await store.settle(first.reservation, CENT)
        second = await store.admit(big, "t2")
        assert isinstance(second, Admitted)
        await store.settle(second.reservation, CENT)
        # The window's settled usage reached the budget: refused, whatever is in flight.
        assert await store.admit(big, "t3") == Refused(reason="key_budget")
        usage, _ = await store.budget_usage((key_id, DAY_1), None)
        assert (usage.usage, usage.reserved) == (Decimal("0.02"), Decimal(0))
        # The next window starts at zero; the all-time usage kept counting.
        again = await store.admit(_key_claim(key_id, "0.02", DAY_2), "t4")
        assert isinstance(again, Admitted)
        await store.release(again.reservation)
        usage, _ = await store.budget_usage((key_id, DAY_2), None)
        assert usage.usage == 0
        assert (await store.get_key(key_id)).usage == Decimal("0.02")

    _run(backend, body)


def test_a_project_budget_is_shared_by_its_keys(backend: Backend) -> None:
    async def body(store: Store) -> None:
        project_id, (a, b) = await _project_with_keys(store, keys=2)
        held = await store.admit(_project_claim(a, project_id, "0.01", DAY_1), "t1")
        assert isinstance(held, Admitted)
        assert (held.reservation.project_id, held.reservation.project_window) == (project_id, DAY_1)
        # Key b has no budget of its own, but its project's window is held by key a.
        assert isinstance(
            await store.admit(_project_claim(b, project_id, "0.01", DAY_1), "t2"), Queued
        )
        await store.settle(held.reservation, CENT)
        refused = await store.admit(_project_claim(b, project_id, "0.01", DAY_1), "t2")
        assert refused == Refused(reason="project_budget")
        _, usage = await store.budget_usage(None, (project_id, DAY_1))
        assert usage.usage == CENT

    _run(backend, body)


def test_budget_refusal_comes_after_the_usage_limit(backend: Backend) -> None:
    async def body(store: Store) -> None:
        _, (key_id,) = await _project_with_keys(store)
        await store.set_usage_limit(key_id, Decimal(0))
        assert await store.admit(_key_claim(key_id, "0", DAY_1), "t") == Refused(reason="limit")

    _run(backend, body)


async def _burst(stores: list[Store], claim: Claim, requests: int) -> list[object]:
    """`requests` concurrent reserve -> settle(one cent), spread over `stores`."""
    admissions = [Admission(store, wait_seconds=30, poll_interval=0.05) for store in stores]

    async def one(i: int) -> object:
        admission = admissions[i % len(admissions)]
        outcome = await admission.reserve(claim)
        if isinstance(outcome, Reservation):
            await asyncio.sleep(0)
            await admission.settle(outcome, CENT)
        return outcome

    return list(await asyncio.gather(*(one(i) for i in range(requests))))


def test_exactly_n_requests_fit_a_budget(backend: Backend) -> None:
    """A budget for ten one-cent requests and thirty at once: exactly ten are served
    and the window's usage is exactly 0.10 (the bound equals the real cost)."""

    async def body(store: Store) -> None:
        project_id, (key_id,) = await _project_with_keys(store)
        claim = _key_claim(key_id, "0.10", DAY_1)
        outcomes = await _burst([store], claim, 30)
        assert sum(isinstance(o, Reservation) for o in outcomes) == 10
        assert all(
            o == Refused(reason="key_budget") for o in outcomes if not isinstance(o, Reservation)
        )
        usage, _ = await store.budget_usage((key_id, DAY_1), None)
        assert (usage.usage, usage.reserved) == (Decimal("0.10"), Decimal(0))
        # The same for a project budget.
        claim = _project_claim(key_id, project_id, "0.10", DAY_2)
        outcomes = await _burst([store], claim, 30)
        assert sum(isinstance(o, Reservation) for o in outcomes) == 10
        _, usage = await store.budget_usage(None, (project_id, DAY_2))
        assert usage.usage == Decimal("0.10")

    _run(backend, body)


def test_exactly_n_across_two_instances(shared_backend: Backend) -> None:
    """Two stores on one database (two gateway instances) share one budget window."""

    async def body() -> None:
        first, second = shared_backend.open(), shared_backend.open()
        try:
            await first.migrate()
            await second.migrate()
            project_id, (a, b) = await _project_with_keys(first, keys=2)
            claims = [
                _project_claim(a, project_id, "0.10", DAY_1),
                _project_claim(b, project_id, "0.10", DAY_1),
            ]
            admissions = [
                Admission(s, wait_seconds=30, poll_interval=0.05) for s in (first, second)
            ]

            async def one(i: int) -> object:
                admission = admissions[i % 2]
                outcome = await admission.reserve(claims[(i // 2) % 2])
                if isinstance(outcome, Reservation):
                    await admission.settle(outcome, CENT)
                return outcome

            outcomes = await asyncio.gather(*(one(i) for i in range(30)))
            assert sum(isinstance(o, Reservation) for o in outcomes) == 10
            for store in (first, second):
                _, usage = await store.budget_usage(None, (project_id, DAY_1))
                assert usage.usage == Decimal("0.10")
        finally:
            await first.close()
            await second.close()

    shared_backend.run(body)


def test_window_usage_survives_a_lost_redis_ledger(redis_backend: Backend) -> None:
    """Settled window usage reaches PostgreSQL with the ledger's flush: a gateway on a
    fresh Redis (its ledger lost) still refuses the spent window."""

    async def body() -> None:
        store = redis_backend.open()
        try:
            await store.migrate()
            _, (key_id,) = await _project_with_keys(store)
            held = await store.admit(_key_claim(key_id, "0.01", DAY_1), "t1")
            assert isinstance(held, Admitted)
            await store.settle(held.reservation, CENT)
        finally:
            await store.close()  # flushes
        fresh = redis_backend.open(redis_prefix=f"gwtest:{secrets.token_hex(6)}:")
        try:
            await fresh.migrate()
            usage, _ = await fresh.budget_usage((key_id, DAY_1), None)
            assert usage.usage == CENT
            refused = await fresh.admit(_key_claim(key_id, "0.01", DAY_1), "t2")
            assert refused == Refused(reason="key_budget")
        finally:
            await fresh.close()

    redis_backend.run(body)


def test_budgets_are_stored_with_keys_and_projects(backend: Backend) -> None:
    from proxy.budgets import Budget

    async def body(store: Store) -> None:
        project_id, (key_id,) = await _project_with_keys(store)
        key = await store.set_key_budget(key_id, Budget(amount=Decimal("5.00"), period="day"))
        assert key.budget == Budget(amount=Decimal("5.00"), period="day")
        assert (await store.get_key(key_id)).budget == key.budget
        project = await store.set_project_budget(
            project_id, Budget(amount=Decimal("50"), period="month")
        )
        assert (await store.get_project(project_id)).budget == project.budget
        assert project.budget is not None and project.budget.period == "month"
        assert (await store.set_key_budget(key_id, None)).budget is None
        assert (await store.set_project_budget(project_id, None)).budget is None

    _run(backend, body)
