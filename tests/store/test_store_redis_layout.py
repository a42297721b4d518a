"""The Redis ledger's reservation layout: each reservation is one member of the `held`
index naming what it holds (no `r:<id>` hash), ids of any text are safe in it, and
reservations of the previous layout (`r:<id>` plus `exp`), left behind by an instance of
the previous version, are still reclaimed (proxy/store/redis_scripts.py, "Upgrading")."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import redis
from store_backends import Backend

from proxy.store import Store
from proxy.store.base import Admitted, BudgetWindow, Claim
from proxy.store.redis_ledger import default_prefix

CENT = Decimal("0.01")
DAY = "2027-03-01T00:00:00Z"


def _prefix(backend: Backend) -> str:
    """The ledger's key prefix in the stores `backend` opens."""
    prefix = backend.options.get("redis_prefix")
    return prefix if isinstance(prefix, str) else default_prefix(backend.database_url)


def _client(backend: Backend) -> redis.Redis:
    assert backend.usage_store_url is not None
    return redis.Redis.from_url(backend.usage_store_url)


def _legacy_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}r:*", count=1000))


async def _org_and_key(store: Store, org_id: str) -> tuple[str, str, str]:
    """A project of organization `org_id` billed to credits and a key of it: (project,
    key id, token hash)."""
    await store.create_organization(org_id, Decimal("10.00"))
    project_id = f"{org_id}-project"
    await store.create_project(project_id, org_id, "credits")
    key, _ = await store.create_key(project_id, Decimal("5.00"), "layout")
    return project_id, key.id, key.token_hash


async def _figures(store: Store, token_hash: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """The key's usage and reserved, its organization's credits and reserved."""
    context = await store.key_context(token_hash)
    assert context is not None
    return (
        context.key.usage,
        context.reserved,
        context.organization.credits,
        context.credits_reserved,
    )


def test_a_reservation_is_one_member_of_held_until_settled(redis_backend: Backend) -> None:
    prefix = _prefix(redis_backend)
    client = _client(redis_backend)

    async def body() -> None:
        store = redis_backend.open()
        try:
            await store.migrate()
            _, key_id, token_hash = await _org_and_key(store, "org-layout")
            reservation = await store.reserve(key_id, "org-layout", CENT)
            assert reservation is not None
            members = client.zrange(f"{prefix}held", 0, -1)
            assert len(members) == 1
            assert members[0].startswith(reservation.id.encode() + b"\xff")
            assert _legacy_keys(client, prefix) == []
            assert client.zcard(f"{prefix}exp") == 0
            assert await _figures(store, token_hash) == (
                Decimal(0),
                CENT,
                Decimal("10.00"),
                CENT,
            )
            await store.settle(reservation, Decimal("0.004"))
            assert await _figures(store, token_hash) == (
                Decimal("0.004"),
                Decimal(0),
                Decimal("9.996"),
                Decimal(0),
            )
            assert client.zcard(f"{prefix}held") == 0
        finally:
            await store.close()
            client.close()

    redis_backend.run(body)


def test_an_expired_reservation_of_any_ids_and_windows_is_reclaimed(
    redis_backend: Backend,
) -> None:
    """Ids with a tab, non-ASCII text (ÿ is two bytes in UTF-8, never the byte 255) and a
    project budget window: the reclaim reads them back from the member and gives every
    amount back, then the late settlement charges the cost and reserves nothing back."""
    prefix = _prefix(redis_backend)
    client = _client(redis_backend)
    org_id = "org\twith tab ÿ é"

    async def body() -> None:
        store = redis_backend.open()
        try:
            await store.migrate()
            project_id, key_id, token_hash = await _org_and_key(store, org_id)
            claim = Claim(
                key_id=key_id,
                organization_id=org_id,
                amount=CENT,
                project_id=project_id,
                project_budget=BudgetWindow(amount=Decimal("1.00"), start=DAY),
            )
            outcome = await store.admit(claim, "tkt-layout")
            assert isinstance(outcome, Admitted)
            _, window_reserved = await store.budget_usage(None, (project_id, DAY))
            assert window_reserved.reserved == CENT
            for member in client.zrange(f"{prefix}held", 0, -1):
                client.zadd(f"{prefix}held", {member: 0}, xx=True)
            assert await store.reclaim_expired() == 1
            assert await _figures(store, token_hash) == (
                Decimal(0),
                Decimal(0),
                Decimal("10.00"),
                Decimal(0),
            )
            _, window = await store.budget_usage(None, (project_id, DAY))
            assert window.reserved == Decimal(0)
            await store.settle(outcome.reservation, Decimal("0.003"))
            assert await _figures(store, token_hash) == (
                Decimal("0.003"),
                Decimal(0),
                Decimal("9.997"),
                Decimal(0),
            )
            _, window = await store.budget_usage(None, (project_id, DAY))
            assert (window.usage, window.reserved) == (Decimal("0.003"), Decimal(0))
        finally:
            await store.close()
            client.close()

    redis_backend.run(body)


def test_a_previous_layout_reservation_is_reclaimed_by_a_key_read(
    redis_backend: Backend,
) -> None:
    """What an instance of the previous version wrote for a reservation (its `r:<id>`
    hash, its `exp` entry and the ledgers' reserved figures), expired because that
    instance stopped: this version's key read (LEDGER) drops it; RECLAIM would too."""
    prefix = _prefix(redis_backend)
    client = _client(redis_backend)

    async def body() -> None:
        store = redis_backend.open()
        try:
            await store.migrate()
            _, key_id, token_hash = await _org_and_key(store, "org-previous")
            assert await _figures(store, token_hash) == (
                Decimal(0),
                Decimal(0),
                Decimal("10.00"),
                Decimal(0),
            )
            units = 10_000_000  # a cent in nano-USD
            client.hincrby(f"{prefix}k:{key_id}", "reserved", units)
            client.hincrby(f"{prefix}o:org-previous", "reserved", units)
            client.hset(
                f"{prefix}r:res_previous",
                mapping={"key": key_id, "org": "org-previous", "amount": units},
            )
            client.zadd(f"{prefix}exp", {"res_previous": 0})
            assert await _figures(store, token_hash) == (
                Decimal(0),
                Decimal(0),
                Decimal("10.00"),
                Decimal(0),
            )
            assert _legacy_keys(client, prefix) == []
            assert client.zcard(f"{prefix}exp") == 0
            client.hincrby(f"{prefix}k:{key_id}", "reserved", units)
            client.hset(
                f"{prefix}r:res_second", mapping={"key": key_id, "org": "", "amount": units}
            )
            client.zadd(f"{prefix}exp", {"res_second": 0})
            assert await store.reclaim_expired() == 1
            assert _legacy_keys(client, prefix) == []
        finally:
            await store.close()
            client.close()

    redis_backend.run(body)


def test_an_expired_reservation_in_the_way_is_reclaimed_by_the_admission(
    redis_backend: Backend,
) -> None:
    """ADMIT reclaims expired reservations when they keep a claim out (not on every
    admission): the claim is admitted at once, not queued behind a reservation whose
    instance never settled it."""
    client = _client(redis_backend)
    prefix = _prefix(redis_backend)

    async def body() -> None:
        store = redis_backend.open(reservation_ttl=0.3)
        try:
            await store.migrate()
            _, key_id, token_hash = await _org_and_key(store, "org-expiry")
            whole = Claim(key_id=key_id, organization_id="org-expiry", amount=Decimal("5.00"))
            first = await store.admit(whole, "tkt-first")
            assert isinstance(first, Admitted)
            await asyncio.sleep(0.5)  # past the reservation's TTL; nobody settles it
            assert client.zcard(f"{prefix}held") == 1
            small = Claim(key_id=key_id, organization_id="org-expiry", amount=CENT)
            second = await store.admit(small, "tkt-second")
            assert isinstance(second, Admitted)
            members = client.zrange(f"{prefix}held", 0, -1)
            assert [m.split(b"\xff")[0] for m in members] == [second.reservation.id.encode()]
            assert await _figures(store, token_hash) == (
                Decimal(0),
                CENT,
                Decimal("10.00"),
                CENT,
            )
        finally:
            await store.close()
            client.close()

    redis_backend.run(body)
