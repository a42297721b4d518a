"""Reservations and settlement: the limit holds exactly under concurrency, expiry reclaims."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from store_backends import Backend

from proxy.store import Reservation, Store

LIMIT = Decimal("1.00")
COST = Decimal("0.01")


async def _key_with_limit(store: Store, limit: Decimal | None = LIMIT) -> str:
    await store.ensure_defaults()
    key, _ = await store.create_key("default", limit, "ledger test")
    return key.id


async def _burst(store: Store, key_id: str, n: int, org: str | None = None) -> int:
    """Fire `n` reserve -> settle requests at once; return how many were admitted."""

    async def one() -> bool:
        reservation = await store.reserve(key_id, org, COST)
        if reservation is None:
            return False
        await asyncio.sleep(0)  # let the others interleave while this one is "in flight"
        await store.settle(reservation, COST)
        return True

    results = await asyncio.gather(*(one() for _ in range(n)))
    return sum(results)


def test_200_concurrent_reservations_admit_exactly_100(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            key_id = await _key_with_limit(store)
            admitted = await _burst(store, key_id, 200)
            # Drain one at a time: nothing may be admitted past the limit.
            while (reservation := await store.reserve(key_id, None, COST)) is not None:
                await store.settle(reservation, COST)
                admitted += 1
            assert admitted == 100
            key = await store.get_key(key_id)
            assert key.usage == Decimal("1.00")
            assert key.usage <= LIMIT
        finally:
            await store.close()

    backend.run(body)


def test_in_flight_reservations_count_against_the_limit(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            key_id = await _key_with_limit(store, Decimal("0.05"))
            held = await store.reserve(key_id, None, Decimal("0.05"))
            assert held is not None
            # usage 0 + in flight 0.05 >= limit 0.05: refused until the first settles.
            assert await store.reserve(key_id, None, Decimal("0.01")) is None
            await store.settle(held, Decimal("0.02"))
            again = await store.reserve(key_id, None, Decimal("0.01"))
            assert again is not None
            await store.release(again)
            key = await store.get_key(key_id)
            assert key.usage == Decimal("0.02")
        finally:
            await store.close()

    backend.run(body)


def test_zero_limit_blocks_and_no_limit_is_unlimited(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            blocked = await _key_with_limit(store, Decimal("0"))
            assert await store.reserve(blocked, None, COST) is None
            unlimited = await _key_with_limit(store, None)
            for _ in range(5):
                reservation = await store.reserve(unlimited, None, Decimal("1000"))
                assert reservation is not None
                await store.settle(reservation, Decimal("1000"))
            assert (await store.get_key(unlimited)).usage == Decimal("5000")
        finally:
            await store.close()

    backend.run(body)


def test_release_charges_nothing(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            key_id = await _key_with_limit(store)
            reservation = await store.reserve(key_id, "default", Decimal("0.50"))
            assert reservation is not None
            await store.release(reservation)
            assert (await store.get_key(key_id)).usage == Decimal(0)
            assert (await store.get_organization("default")).credits == Decimal("10.00")
        finally:
            await store.close()

    backend.run(body)


def test_credits_are_charged_only_when_billed_to_credits(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        try:
            await store.migrate()
            key_id = await _key_with_limit(store, None)
            await store.set_credits("default", Decimal("0.03"))
            own_key = await store.reserve(key_id, None, COST)
            assert own_key is not None
            await store.settle(own_key, COST)
            assert (await store.get_organization("default")).credits == Decimal("0.03")
            admitted = await _burst(store, key_id, 10, org="default")
            # Credits 0.03 admit while credits - reserved > 0: exactly three 0.01 requests.
            assert admitted == 3
            assert (await store.get_organization("default")).credits == Decimal("0.00")
            assert await store.reserve(key_id, "default", COST) is None
            assert await store.reserve(key_id, None, COST) is not None
            assert (await store.get_key(key_id)).usage == Decimal("0.04")
        finally:
            await store.close()

    backend.run(body)


def test_expired_reservations_stop_counting_and_are_reclaimed(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open(reservation_ttl=0.3)
        try:
            await store.migrate()
            key_id = await _key_with_limit(store, Decimal("0.01"))
            leaked = await store.reserve(key_id, None, COST)
            assert leaked is not None
            assert await store.reserve(key_id, None, COST) is None
            await asyncio.sleep(0.5)
            fresh = await store.reserve(key_id, None, COST)
            assert fresh is not None
            await store.release(fresh)
            assert await store.reclaim_expired() == 0  # the reserve above already reclaimed it
            # A late settlement of the expired reservation still records the real cost.
            await store.settle(leaked, COST)
            assert (await store.get_key(key_id)).usage == COST
            assert await store.reserve(key_id, None, COST) is None
        finally:
            await store.close()

    backend.run(body)


def test_key_context_ignores_expired_reservations_without_a_reserve(backend: Backend) -> None:
    """After a crash no reserve may come: the policy refuses the key on its context
    alone, so the context itself must stop counting reservations past their TTL."""

    async def body() -> None:
        store = backend.open(reservation_ttl=0.3)
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, token = await store.create_key("default", Decimal("0.01"), "crash leftovers")
            leaked = await store.reserve(key.id, "default", COST)
            assert leaked is not None
            held = await store.key_context(store.hash_token(token))
            assert held is not None
            assert (held.reserved, held.credits_reserved) == (COST, COST)
            await asyncio.sleep(0.5)
            context = await store.key_context(store.hash_token(token))
            assert context is not None
            assert (context.reserved, context.credits_reserved) == (Decimal(0), Decimal(0))
            assert context.key.usage == Decimal(0)
        finally:
            await store.close()

    backend.run(body)


def test_usage_survives_reopening(backend: Backend) -> None:
    async def body() -> Reservation:
        store = backend.open()
        try:
            await store.migrate()
            key_id = await _key_with_limit(store)
            reservation = await store.reserve(key_id, None, COST)
            assert reservation is not None
            await store.settle(reservation, Decimal("0.123456789"))
            return reservation
        finally:
            await store.close()

    reservation = backend.run(body)

    async def check() -> None:
        store = backend.open()
        try:
            await store.migrate()
            assert (await store.get_key(reservation.key_id)).usage == Decimal("0.123456789")
        finally:
            await store.close()

    backend.run(check)
