"""Rate limits in `Store.admit` on every backend (issue 13 point 2): requests and tokens
per sliding minute of the request clock, requests in flight, per key and per project,
checked in the same atomic step as the money; two stores sharing a database together
admit no more than the limit. Time is the claim's `now`, never a sleep."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import pytest
from store_backends import Backend

from proxy.store import Store
from proxy.store.base import (
    Admitted,
    Claim,
    Queued,
    RateLimits,
    Refused,
    Reservation,
    StoreError,
)

NONE = RateLimits()
T0 = 1_800_000_000.0  # a request time; the store never reads the wall clock for windows


async def _key(
    store: Store, key_limits: RateLimits, project_limits: RateLimits = NONE
) -> tuple[str, str]:
    suffix = secrets.token_hex(5)
    await store.create_organization(f"org-{suffix}", Decimal("10.00"))
    await store.create_project(f"proj-{suffix}", f"org-{suffix}", "credits")
    await store.set_project_rate_limits(f"proj-{suffix}", project_limits)
    key, _ = await store.create_key(f"proj-{suffix}", None, "rate test", rate_limits=key_limits)
    return key.id, f"proj-{suffix}"


async def _other_key(store: Store, project_id: str) -> str:
    key, _ = await store.create_key(project_id, None, "second key")
    return key.id


def _claim(
    key_id: str,
    project_id: str,
    now: float,
    *,
    key: RateLimits = NONE,
    project: RateLimits = NONE,
    tokens: int = 0,
) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id=None,
        amount=Decimal("0.01"),
        project_id=project_id,
        key_limits=key,
        project_limits=project,
        tokens=tokens,
        now=now,
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


def _admitted(outcome: Admitted | Queued | Refused) -> Reservation:
    assert isinstance(outcome, Admitted), outcome
    return outcome.reservation


def test_rpm_refuses_within_the_minute_and_admits_when_the_window_moves(
    backend: Backend,
) -> None:
    limits = RateLimits(rpm=3)

    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, limits)
        for i in range(3):
            reservation = _admitted(
                await store.admit(_claim(key_id, project_id, T0 + i, key=limits), f"t{i}")
            )
            assert reservation.rate is not None and reservation.rate.key is not None
            assert reservation.rate.key.requests == i + 1
            await store.settle(reservation, Decimal("0.001"), tokens=5)
        refused = await store.admit(_claim(key_id, project_id, T0 + 59.5, key=limits), "t3")
        assert isinstance(refused, Refused) and refused.reason == "rate_limit_requests"
        assert refused.rate is not None and refused.rate.key is not None
        assert refused.rate.key.requests == 3 and refused.rate.key.oldest == T0
        assert refused.rate.project is None  # the project has no limits: not counted
        # Exactly 60 s after the first request it has left the window (now - 60, now].
        again = _admitted(await store.admit(_claim(key_id, project_id, T0 + 60, key=limits), "t4"))
        assert again.rate is not None and again.rate.key is not None
        assert again.rate.key.requests == 3
        assert again.rate.key.oldest == T0 + 1 and again.rate.key.newest == T0 + 60

    _run(backend, body)


def test_tpm_reserves_the_bound_and_counts_settled_tokens(backend: Backend) -> None:
    limits = RateLimits(tpm=100)

    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, limits)

        def claim(t: float, tokens: int) -> Claim:
            return _claim(key_id, project_id, t, key=limits, tokens=tokens)

        first = _admitted(await store.admit(claim(T0, 40), "a"))
        second = _admitted(await store.admit(claim(T0 + 1, 40), "b"))
        # 80 reserved + 40 > 100: refused, though nothing has settled yet.
        refused = await store.admit(claim(T0 + 2, 40), "c")
        assert isinstance(refused, Refused) and refused.reason == "rate_limit_tokens"
        assert refused.rate is not None and refused.rate.key is not None
        assert refused.rate.key.tokens == 80
        # The provider reported 10 tokens: the window now holds 10 + 40.
        await store.settle(first, Decimal("0.001"), tokens=10)
        third = _admitted(await store.admit(claim(T0 + 3, 40), "d"))
        assert third.rate is not None and third.rate.key is not None
        assert third.rate.key.tokens == 90
        # A failed request gives its tokens back (it still counts as a request).
        await store.release(second)
        windows = await store.rate_windows(key_id, project_id, T0 + 4)
        assert windows.key is not None
        assert (windows.key.requests, windows.key.tokens) == (3, 50)
        # A request larger than the whole ceiling is never admitted.
        too_big = await store.admit(claim(T0 + 5, 101), "e")
        assert isinstance(too_big, Refused) and too_big.reason == "rate_limit_tokens"

    _run(backend, body)


def test_max_parallel_counts_requests_in_flight(backend: Backend) -> None:
    limits = RateLimits(max_parallel=2)

    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, limits)

        def claim(t: float) -> Claim:
            return _claim(key_id, project_id, t, key=limits)

        first = _admitted(await store.admit(claim(T0), "a"))
        second = _admitted(await store.admit(claim(T0), "b"))
        refused = await store.admit(claim(T0), "c")
        assert isinstance(refused, Refused) and refused.reason == "max_parallel"
        assert refused.rate is not None and refused.rate.key is not None
        assert refused.rate.key.parallel == 2
        await store.settle(first, Decimal("0.001"), tokens=3)
        third = _admitted(await store.admit(claim(T0), "d"))
        await store.release(second)
        await store.release(third)
        windows = await store.rate_windows(key_id, project_id, T0)
        assert windows.key is not None and windows.key.parallel == 0

    _run(backend, body)


def test_project_limits_are_shared_by_its_keys(backend: Backend) -> None:
    shared = RateLimits(rpm=2)

    async def body(store: Store) -> None:
        key_a, project_id = await _key(store, RateLimits(), shared)
        key_b = await _other_key(store, project_id)
        _admitted(await store.admit(_claim(key_a, project_id, T0, project=shared), "a"))
        _admitted(await store.admit(_claim(key_b, project_id, T0, project=shared), "b"))
        refused = await store.admit(_claim(key_a, project_id, T0 + 1, project=shared), "c")
        assert isinstance(refused, Refused) and refused.reason == "rate_limit_requests"
        assert refused.rate is not None and refused.rate.key is None
        assert refused.rate.project is not None and refused.rate.project.requests == 2

    _run(backend, body)


def test_a_rate_refusal_holds_nothing(backend: Backend) -> None:
    limits = RateLimits(rpm=1)

    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, limits)
        first = _admitted(await store.admit(_claim(key_id, project_id, T0, key=limits), "a"))
        for i in range(3):
            refused = await store.admit(_claim(key_id, project_id, T0, key=limits), f"r{i}")
            assert isinstance(refused, Refused)
        await store.settle(first, Decimal("0.25"), tokens=1)
        key = await store.get_key(key_id)
        assert key.usage == Decimal("0.25")
        windows = await store.rate_windows(key_id, project_id, T0)
        assert windows.key is not None
        assert (windows.key.requests, windows.key.parallel) == (1, 0)

    _run(backend, body)


def test_two_stores_sharing_the_database_admit_no_more_than_the_rpm(backend: Backend) -> None:
    """The exact-N burst for rate limits: 2 x 30 concurrent claims from two stores."""
    limits = RateLimits(rpm=10, max_parallel=25)

    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, limits)
        other = backend.open()
        try:
            await other.migrate()
            claims = [
                s.admit(_claim(key_id, project_id, T0 + i / 100, key=limits), f"t{n}-{i}")
                for n, s in enumerate((store, other))
                for i in range(30)
            ]
            outcomes = await asyncio.gather(*claims)
        finally:
            await other.close()
        admitted = [o for o in outcomes if isinstance(o, Admitted)]
        reasons = {o.reason for o in outcomes if isinstance(o, Refused)}
        assert len(admitted) == 10
        assert reasons == {"rate_limit_requests"}

    _run(backend, body)


def test_limits_are_stored_and_checked(backend: Backend) -> None:
    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, RateLimits(rpm=60, tpm=100_000, max_parallel=4))
        key = await store.get_key(key_id)
        assert key.rate_limits == RateLimits(rpm=60, tpm=100_000, max_parallel=4)
        key = await store.set_key_rate_limits(key_id, RateLimits(tpm=5))
        assert key.rate_limits == RateLimits(tpm=5)
        assert (await store.get_key(key_id)).rate_limits == RateLimits(tpm=5)
        project = await store.set_project_rate_limits(project_id, RateLimits(max_parallel=3))
        assert project.rate_limits == RateLimits(max_parallel=3)
        assert (await store.get_project(project_id)).rate_limits.max_parallel == 3
        with pytest.raises(StoreError, match="rpm: `0` is not a whole number from 1"):
            await store.set_key_rate_limits(key_id, RateLimits(rpm=0))

    _run(backend, body)


def test_a_request_in_flight_past_its_window_leaves_the_window_not_the_parallel_count(
    backend: Backend,
) -> None:
    """The windows keep running totals: a request older than 60 s leaves them once,
    its late settlement does not touch them, and it counts as in flight until then."""
    limits = RateLimits(rpm=10, tpm=1000, max_parallel=5)

    async def body(store: Store) -> None:
        key_id, project_id = await _key(store, limits)

        def claim(t: float, tokens: int) -> Claim:
            return _claim(key_id, project_id, t, key=limits, tokens=tokens)

        slow = _admitted(await store.admit(claim(T0, 40), "a"))
        late = _admitted(await store.admit(claim(T0 + 61, 30), "b"))
        assert late.rate is not None and late.rate.key is not None
        assert (late.rate.key.requests, late.rate.key.tokens, late.rate.key.parallel) == (1, 30, 2)
        await store.settle(slow, Decimal("0.01"), tokens=900)  # outside the window now
        await store.settle(late, Decimal("0.01"), tokens=7)
        windows = await store.rate_windows(key_id, project_id, T0 + 62)
        assert windows.key is not None
        assert (windows.key.requests, windows.key.tokens, windows.key.parallel) == (1, 7, 0)
        assert windows.key.oldest == T0 + 61
        windows = await store.rate_windows(key_id, project_id, T0 + 121)
        assert windows.key is not None
        assert (windows.key.requests, windows.key.tokens, windows.key.oldest) == (0, 0, None)

    _run(backend, body)
