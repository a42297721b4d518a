"""Fair admission (`Store.admit`, proxy/admission.py) on every backend: settled figures
alone refuse, in-flight reservations make a request wait, the line is FIFO, a dead
waiter's ticket expires, and a property over random costs, limits and concurrency;
and (a fake store) a settlement while the store answers is not missed."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_backends import Backend

from proxy.admission import Admission, TimedOut
from proxy.store import Store
from proxy.store.base import Admitted, Claim, Queued, Refused, Reservation
from proxy.store.postgres import PostgresStore
from proxy.store.redis_ledger import RedisLedgerStore


async def _key(store: Store, limit: str | None, credits: str = "10.00") -> tuple[str, str]:
    """A fresh organization (with `credits`), project and key (with `limit`)."""
    suffix = secrets.token_hex(5)
    await store.create_organization(f"org-{suffix}", Decimal(credits))
    await store.create_project(f"proj-{suffix}", f"org-{suffix}", "credits")
    key, _ = await store.create_key(
        f"proj-{suffix}", None if limit is None else Decimal(limit), "admission test"
    )
    return key.id, f"org-{suffix}"


def _run(backend: Backend, body: object) -> None:
    async def wrapped() -> None:
        store = backend.open()
        try:
            await store.migrate()
            await body(store)  # type: ignore[operator]
        finally:
            await store.close()

    backend.run(wrapped)


def test_in_flight_reservations_queue_and_settled_usage_refuses(backend: Backend) -> None:
    async def body(store: Store) -> None:
        key_id, _ = await _key(store, "1.00")
        big = Claim(key_id=key_id, organization_id=None, amount=Decimal("5.00"))
        first = await store.admit(big, "t1")
        assert isinstance(first, Admitted)
        # Only the reservation stands in the way: wait, do not refuse.
        assert isinstance(await store.admit(big, "t2"), Queued)
        await store.settle(first.reservation, Decimal("0.40"))
        second = await store.admit(big, "t2")
        assert isinstance(second, Admitted)
        await store.settle(second.reservation, Decimal("0.60"))
        # Settled usage reached the limit: refused, whatever is in flight.
        assert await store.admit(big, "t3") == Refused(reason="limit")

    _run(backend, body)


def test_credits_refuse_only_on_the_settled_figure(backend: Backend) -> None:
    async def body(store: Store) -> None:
        key_id, org = await _key(store, None, credits="1.00")
        claim = Claim(key_id=key_id, organization_id=org, amount=Decimal("3.00"))
        first = await store.admit(claim, "t1")
        assert isinstance(first, Admitted)
        assert isinstance(await store.admit(claim, "t2"), Queued)
        await store.settle(first.reservation, Decimal("1.00"))
        assert await store.admit(claim, "t2") == Refused(reason="credits")

    _run(backend, body)


def test_the_line_is_first_in_first_out(backend: Backend) -> None:
    async def body(store: Store) -> None:
        key_id, _ = await _key(store, "1.00")
        claim = Claim(key_id=key_id, organization_id=None, amount=Decimal("2.00"))
        held = await store.admit(claim, "t0")
        assert isinstance(held, Admitted)
        assert isinstance(await store.admit(claim, "early"), Queued)
        assert isinstance(await store.admit(claim, "late"), Queued)
        await store.release(held.reservation)
        # Room now, but `early` is ahead: a newcomer and `late` keep waiting.
        assert isinstance(await store.admit(claim, "newcomer"), Queued)
        assert isinstance(await store.admit(claim, "late"), Queued)
        assert isinstance(await store.admit(claim, "early"), Admitted)
        await store.withdraw(claim, "newcomer")  # gave up: out of line
        assert isinstance(await store.admit(claim, "t9"), Queued)  # `early` holds the room

    _run(backend, body)


def test_a_dead_waiters_ticket_expires(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proxy.store.sqlite.ADMISSION_TICKET_TTL", 0.2)
    monkeypatch.setattr("proxy.store.postgres.ADMISSION_TICKET_TTL", 0.2)
    monkeypatch.setattr("proxy.store.redis_ledger.ADMISSION_TICKET_TTL", 0.2)

    async def body(store: Store) -> None:
        key_id, _ = await _key(store, "1.00")
        claim = Claim(key_id=key_id, organization_id=None, amount=Decimal("2.00"))
        held = await store.admit(claim, "t0")
        assert isinstance(held, Admitted)
        assert isinstance(await store.admit(claim, "dead"), Queued)  # never asks again
        assert isinstance(await store.admit(claim, "alive"), Queued)
        await store.release(held.reservation)
        assert isinstance(await store.admit(claim, "alive"), Queued)  # `dead` is ahead
        await asyncio.sleep(0.3)
        assert isinstance(await store.admit(claim, "alive"), Admitted)

    _run(backend, body)


async def _burst(
    store: Store, claims: list[tuple[Claim, Decimal]], concurrency: int, wait: float
) -> list[Reservation | Refused | TimedOut]:
    """Run reserve -> settle for every (claim, real cost), `concurrency` at a time."""
    admission = Admission(store, wait_seconds=wait, poll_interval=0.05)
    gate = asyncio.Semaphore(concurrency)

    async def one(claim: Claim, cost: Decimal) -> Reservation | Refused | TimedOut:
        async with gate:
            outcome = await admission.reserve(claim)
            if isinstance(outcome, Reservation):
                await asyncio.sleep(0)
                await admission.settle(outcome, cost)
            return outcome

    return await asyncio.gather(*(one(claim, cost) for claim, cost in claims))


def test_property_never_past_the_limit_by_more_than_one_bound_nor_refused_below(
    backend: Backend,
) -> None:
    """Random limits, bounds, real costs (each at most its bound) and concurrency: usage
    ends at most one bound past the limit, every refusal came with settled usage at the
    limit, and nobody waited out the admission time. One store for every example (each
    gets a fresh key), so the property stays cheap on every backend."""

    async def check(
        store: Store, limit: Decimal, runs: list[tuple[Decimal, Decimal]], concurrency: int
    ) -> None:
        key_id, _ = await _key(store, str(limit))
        claims = [
            (Claim(key_id=key_id, organization_id=None, amount=bound), cost) for bound, cost in runs
        ]
        outcomes = await _burst(store, claims, concurrency, wait=30)
        usage = (await store.get_key(key_id)).usage
        assert usage <= limit + max(bound for bound, _ in runs)
        assert not any(isinstance(o, TimedOut) for o in outcomes)
        if any(isinstance(o, Refused) for o in outcomes):
            assert usage >= limit
        charged = [
            cost
            for (_, cost), o in zip(claims, outcomes, strict=True)
            if isinstance(o, Reservation)
        ]
        assert usage == sum(charged, Decimal(0))

    cents = st.integers(min_value=1, max_value=60).map(lambda c: Decimal(c) / 100)
    share = st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1)])
    run = st.tuples(cents, share).map(lambda pair: (pair[0], pair[0] * pair[1]))

    async def body(store: Store) -> None:
        loop = asyncio.get_running_loop()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            limit=st.integers(min_value=0, max_value=300).map(lambda c: Decimal(c) / 100),
            runs=st.lists(run, min_size=1, max_size=30),
            concurrency=st.integers(min_value=1, max_value=30),
        )
        def example(limit: Decimal, runs: list[tuple[Decimal, Decimal]], concurrency: int) -> None:
            # Hypothesis drives a synchronous function: each example runs on the store's
            # own event loop, submitted from this worker thread.
            future = asyncio.run_coroutine_threadsafe(check(store, limit, runs, concurrency), loop)
            future.result(timeout=120)

        await asyncio.to_thread(example)

    _run(backend, body)


def test_another_instances_settlement_wakes_a_waiter(shared_backend: Backend) -> None:
    """Two stores on one database (two gateway instances): a request waiting in one is
    woken through the other's notifications (LISTEN/NOTIFY, Redis pub/sub). Its poll
    comes only after its whole wait, so only a notification can admit it."""

    async def body() -> None:
        first, second = shared_backend.open(), shared_backend.open()
        try:
            await first.migrate()
            await second.migrate()
            key_id, _ = await _key(first, "1.00")
            claim = Claim(key_id=key_id, organization_id=None, amount=Decimal("5.00"))
            held = await first.admit(claim, "t0")
            assert isinstance(held, Admitted)
            waiter = Admission(second, wait_seconds=30, poll_interval=60)
            waiting = asyncio.create_task(waiter.reserve(claim))
            await asyncio.sleep(0.1)
            await first.settle(held.reservation, Decimal("0.10"))  # notifies once
            # The waiter's listener starts with its first wait: until it is up, a
            # notification can pass it by, so notify again (as another settlement would).
            while not (await asyncio.wait({waiting}, timeout=0.2))[0]:
                await _notify(first, key_id)
            assert isinstance(waiting.result(), Reservation)
        finally:
            await first.close()
            await second.close()

    shared_backend.run(body)


async def _notify(store: Store, key_id: str) -> None:
    """What a settlement in another instance sends while someone waits on `key_id`."""
    if isinstance(store, RedisLedgerStore):
        await store._redis.publish(store._prefix + "wake", f"{key_id}\t")
    else:
        assert isinstance(store, PostgresStore)
        await store._fetchone("SELECT gw_wake(%s, NULL)", (key_id,))


class _AnswersAfterASettlement:
    """A store whose first answer, queued, comes after a settlement of the same key
    (another request's, while the store was answering); its next answer admits."""

    def __init__(self, settled_key: str) -> None:
        self.admission: Admission | None = None
        self.asked = 0
        self._settled_key = settled_key

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued:
        self.asked += 1
        if self.asked > 1:
            reservation = Reservation(
                id="r1", key_id=claim.key_id, organization_id=None, amount=claim.amount
            )
            return Admitted(reservation=reservation)
        await asyncio.sleep(0)
        assert self.admission is not None
        self.admission.wake(self._settled_key)
        await asyncio.sleep(0)
        return Queued()

    def subscribe(self, wake: object) -> None:
        pass

    async def withdraw(self, claim: Claim, ticket: str) -> None:
        pass


@pytest.mark.parametrize(("settled_key", "asked_before_its_wake"), [("key-a", 2), ("key-b", 1)])
def test_a_settlement_while_the_store_answers_is_not_missed(
    settled_key: str, asked_before_its_wake: int
) -> None:
    """Told to queue after its own key settled meanwhile, a request asks again at once;
    after another key's settlement it waits for its own key's (its poll is a minute)."""

    async def body() -> tuple[int, object]:
        store = _AnswersAfterASettlement(settled_key)
        admission = Admission(store, wait_seconds=120, poll_interval=60)  # type: ignore[arg-type]
        store.admission = admission
        claim = Claim(key_id="key-a", organization_id=None, amount=Decimal("1.00"))
        reserving = asyncio.ensure_future(admission.reserve(claim))
        for _ in range(20):  # every step short of a wait that only a wake ends
            await asyncio.sleep(0)
        asked = store.asked
        admission.wake("key-a")
        return asked, await asyncio.wait_for(reserving, 30)

    asked, outcome = asyncio.run(body())
    assert asked == asked_before_its_wake
    assert isinstance(outcome, Reservation)
