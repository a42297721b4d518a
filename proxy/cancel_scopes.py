"""Cancellation on the gateway's request path: anyio's cancel scope for asyncio, the
shields that hold cancellation off, and a client's departure cancelling its request.

`anyio.CancelScope()` looks the running async library up (sniffio, the current task)
on every call, about 40% of a scope's cost (31.8k -> 19.1k instructions a scope entered
and left, issue 15), and a plain request entered two. The gateway only ever runs on
asyncio, so the scope is made by anyio's asyncio backend class directly: the very object
`anyio.CancelScope()` would return. That class is anyio's internal (measured with anyio
4.16; anyio is not pinned), so an anyio without it falls back to the public one: the
same behaviour, at the lookup's cost.

`shielded(work)` awaits `work` as `with CancelScope(shield=True): await work` does, but
enters the scope only once `work` suspends: a cancellation reaches a coroutine only
where it suspends, and the request path's shielded work (closing the upstream answer,
settling its usage) mostly runs to its end at once (a settlement committed inline, or
a ledger call written without waiting for its reply), and then a shielded scope (~21k
instructions a use, nested in the request's own) protects nothing.

`Departure` cancels one request's task when its client leaves, as an anyio
`CancelScope` entered around the request's work and cancelled would: at once where the
work waits unshielded, else once its shielded work (`Shield`, `shielded`) has ended.
It enters no scope: the request's own scope was the first anyio scope of its task, ~25k
instructions a request (issue 15), for a cancellation needed only by the few requests
whose client leaves before the answer. The shields find the departure of the request
they run in through a context variable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["CancelScope", "Departure", "Shield", "shielded"]

if TYPE_CHECKING:
    from anyio import CancelScope
else:
    try:
        from anyio._backends._asyncio import CancelScope
    except ImportError:  # pragma: no cover - an anyio that moved its backend
        from anyio import CancelScope

T = TypeVar("T")

# The departure of the request whose work runs in this context (None outside one).
_departure: ContextVar[Departure | None] = ContextVar("departure", default=None)


class Departure:
    """Cancels the task of one request once its client has left (`leave`), as a
    cancelled anyio `CancelScope` around the work (`run`) would (see the module doc)."""

    __slots__ = ("_cancelling", "_delivered", "_held", "_left", "_loop", "_running", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._loop = loop
        self._task = task
        self._running = False
        self._left = False
        self._held = 0  # shields of the request's task in force now
        self._delivered = 0  # `Task.cancel` calls made
        self._cancelling = 0  # the task's cancellation requests before the first

    async def run(self, work: Coroutine[Any, Any, T]) -> T | None:
        """`work`'s result, or None if the client's departure cancelled it."""
        token = _departure.set(self)
        self._running = True
        try:
            return await work
        except asyncio.CancelledError:
            if self._delivered and self._uncancel():
                return None  # cancelled because the client left, and by nothing else
            raise
        finally:
            self._running = False
            _departure.reset(token)
            if self._delivered:
                self._uncancel()

    def leave(self) -> None:
        """The client has left: cancel the work, now or once its shields end."""
        self._left = True
        self._deliver()

    def _deliver(self) -> None:
        # As anyio delivers: to the task each loop turn it waits unshielded, until the
        # work ends (work that catches the cancellation is cancelled again at its next
        # wait); never to the task running (work that ends in its current step ends as
        # it would have), nor while a shield is up (its end delivers again).
        if not self._left or self._held or not self._running or self._task.done():
            return
        if self._task is not asyncio.current_task(self._loop):
            if not self._delivered:
                self._cancelling = self._task.cancelling()
            self._delivered += 1
            self._task.cancel()
        self._loop.call_soon(self._deliver)

    def _uncancel(self) -> bool:
        """Withdraws this departure's cancellations; True if no other one is pending."""
        left = self._task.cancelling()
        while self._delivered:
            left = self._task.uncancel()
            self._delivered -= 1
        return left <= self._cancelling

    def _hold(self) -> None:
        self._held += 1

    def _release(self) -> None:
        self._held -= 1
        if not self._held:
            self._deliver()


def _own_departure() -> Departure | None:
    """The departure of the request whose task is running, if any (a task started from
    the request's work inherits its context, not its departure)."""
    departure = _departure.get()
    if departure is None or departure._task is not asyncio.current_task(departure._loop):
        return None
    return departure


class Shield:
    """`with Shield():` holds cancellation off as `with CancelScope(shield=True):`
    does, a client's departure (`Departure`) included."""

    __slots__ = ("_departure", "_scope")

    def __enter__(self) -> None:
        self._scope = CancelScope(shield=True)
        self._scope.__enter__()
        self._departure = departure = _own_departure()
        if departure is not None:
            departure._hold()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            # Never cancelled itself: it swallows nothing.
            return bool(self._scope.__exit__(exc_type, exc, traceback))
        finally:
            if self._departure is not None:
                self._departure._release()


async def shielded(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, with cancellation held off as `Shield` holds it."""
    try:
        first = work.send(None)
    except StopIteration as done:  # ran to its end without suspending: nothing to shield
        result: T = done.value
        return result
    # INVARIANT: nothing suspended since `work` began, so no cancellation reached it, and
    # the shield is raised before the task waits on what `work` suspended on.
    with Shield():
        result = await _Started(work, first)
    return result


class _Started:
    """A coroutine that has started and suspended (yielding `first`), awaited from there
    on: what `yield from` does with it after its first step."""

    __slots__ = ("_first", "_work")

    def __init__(self, work: Coroutine[Any, Any, Any], first: Any) -> None:
        self._work = work
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        work = self._work
        value = self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                work.close()
                raise
            except BaseException as exc:  # thrown in (a cancellation): handed on to `work`
                try:
                    value = work.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = work.send(sent)
                except StopIteration as done:
                    return done.value
