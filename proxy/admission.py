"""Admitting requests against usage limits and credits: fair waiting instead of false refusals.

A request's reservation is an upper bound of its cost, often several times the real
cost, so under a burst the in-flight reservations fill a key's limit long before its
settled usage does. Refusing then would be false: those requests would have fitted.
So a request that does not fit only because of other requests' reservations waits in
line (`Store.admit` keeps the line, FIFO per key and organization, atomically across
every instance sharing the store) until settlements free room, and is then admitted,
or refused once the settled figures alone decide (the documented 401 / 402). The wait
is bounded by `admission_wait_seconds`; when it runs out the request gets a 429.

Waiters sleep until a settlement or release of their key or organization wakes them:
in this process directly, from other instances through the store's notifications
(PostgreSQL LISTEN/NOTIFY, Redis pub/sub), and in any case after `poll_interval`
(which also keeps their ticket alive, and is all SQLite shared by several processes
has). A wake that comes while the store is still answering a request that then
queues is not missed: while any admission is being asked, each ledger woken keeps the
number of its latest wake, and a request told to queue asks again at once if one of
its ledgers was woken since it asked. So requests that never queue (most) register
nothing to be woken by, and a settlement with nobody waiting or asking here wakes
nothing (registering every request was ~22k instructions a request, issue 15).

A request held back by its project's period budget waits in its key's line: it is woken
by this process's settlements of any key of the project, and otherwise by the poll.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from proxy.cancel_scopes import Shield
from proxy.store.base import Admitted, Claim, Queued, Refused, Reservation, Store
from proxy.store.common import ADMISSION_TICKET_TTL, InstanceIds

__all__ = ["DEFAULT_ADMISSION_WAIT", "Admission", "TimedOut"]

DEFAULT_ADMISSION_WAIT = 10.0
# Well inside the ticket TTL, so a live waiter's ticket never expires.
_POLL_INTERVAL = ADMISSION_TICKET_TTL / 8


class TimedOut:
    """The wait for admission ran out (answer 429 with Retry-After)."""

    __slots__ = ()


class Admission:
    """Reserve, settle and release through the store, waking whoever waits on a ledger."""

    def __init__(
        self,
        store: Store,
        *,
        wait_seconds: float = DEFAULT_ADMISSION_WAIT,
        poll_interval: float = _POLL_INTERVAL,
    ) -> None:
        self._store = store
        self._wait = wait_seconds
        self._poll = poll_interval
        # ledger ("k:<key>" / "o:<org>") -> futures of the requests waiting on it
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        # Wakes so far; admissions this process is asking the store now; and while any
        # is, each ledger woken -> the number of its latest wake (see the module doc).
        self._wakes = 0
        self._asking = 0
        self._woken_while_asking: dict[str, int] = {}
        self._subscribed = False
        self._tickets = InstanceIds()

    async def reserve(self, claim: Claim) -> Reservation | Refused | TimedOut:
        """Hold `claim`, waiting in line while only in-flight reservations stand in the way."""
        ticket = self._tickets("tkt")
        # The monotonic clock, not the loop's (the same clock on asyncio, and only
        # differences count): Python 3.11 asks the OS for its pid on every look-up of
        # the running loop, a system call per request.
        deadline = time.monotonic() + self._wait
        queued = False
        try:
            while True:
                asked_after = self._wakes
                self._asking += 1
                try:
                    outcome = await self._store.admit(claim, ticket)
                    if not isinstance(outcome, Queued):
                        if queued:  # left the line: whoever is next may fit now
                            self.wake(claim.key_id, claim.organization_id, _project(claim))
                        return outcome.reservation if isinstance(outcome, Admitted) else outcome
                    ledgers = _ledgers(claim.key_id, claim.organization_id, _project(claim))
                    woken = self._woken_while_asking
                    woken_meanwhile = any(woken.get(ledger, 0) > asked_after for ledger in ledgers)
                finally:
                    self._asking -= 1
                    if not self._asking:
                        self._woken_while_asking.clear()
                queued = True
                if not self._subscribed:  # other instances' settlements wake us too
                    self._store.subscribe(self.wake)
                    self._subscribed = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if woken_meanwhile:  # room may have been freed while the store answered
                    continue
                # Registered with no suspension since the store's answer: no wake is missed.
                waiting = self._listen(ledgers)
                try:
                    await asyncio.wait([waiting], timeout=min(remaining, self._poll))
                finally:
                    self._forget(ledgers, waiting)
        except BaseException:
            if queued:
                with Shield():
                    await self._leave(claim, ticket)
            raise
        await self._leave(claim, ticket)
        return TimedOut()

    async def settle(
        self, reservation: Reservation, actual_cost: Decimal, *, tokens: int = 0
    ) -> None:
        try:
            await self._store.settle(reservation, actual_cost, tokens=tokens)
        finally:
            self.wake(reservation.key_id, reservation.organization_id, reservation.project_id)

    async def release(self, reservation: Reservation) -> None:
        try:
            await self._store.release(reservation)
        finally:
            self.wake(reservation.key_id, reservation.organization_id, reservation.project_id)

    def wake(
        self, key_id: str | None, organization_id: str | None = None, project_id: str | None = None
    ) -> None:
        """Wake the requests of this process waiting on the key, organization or project
        budget (also called for another instance's settlements, from the store's
        notifications, which name the key and organization)."""
        self._wakes += 1
        if not (self._waiters or self._asking):
            return  # nobody here waits, nor may be told to queue: nothing to wake
        ledgers = _ledgers(key_id, organization_id, project_id)
        if self._asking:
            for ledger in ledgers:
                self._woken_while_asking[ledger] = self._wakes
        for ledger in ledgers:
            for future in self._waiters.pop(ledger, ()):
                if not future.done():
                    future.set_result(None)

    async def _leave(self, claim: Claim, ticket: str) -> None:
        await self._store.withdraw(claim, ticket)
        self.wake(claim.key_id, claim.organization_id, _project(claim))

    def _listen(self, ledgers: tuple[str, ...]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for ledger in ledgers:
            self._waiters.setdefault(ledger, set()).add(future)
        return future

    def _forget(self, ledgers: tuple[str, ...], future: asyncio.Future[None]) -> None:
        for ledger in ledgers:
            waiting = self._waiters.get(ledger)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiters[ledger]


def _project(claim: Claim) -> str | None:
    """The project whose budget the claim is held against, if any."""
    return claim.project_id if claim.project_budget is not None else None


def _ledgers(
    key_id: str | None, organization_id: str | None, project_id: str | None = None
) -> tuple[str, ...]:
    if project_id is None:
        if organization_id is None:
            return () if key_id is None else (f"k:{key_id}",)
        if key_id is None:
            return (f"o:{organization_id}",)
        return (f"k:{key_id}", f"o:{organization_id}")
    ledgers = [f"p:{project_id}"]
    if key_id is not None:
        ledgers.append(f"k:{key_id}")
    if organization_id is not None:
        ledgers.append(f"o:{organization_id}")
    return tuple(ledgers)
