"""The cancel scope the gateway's request path enters: anyio's, for asyncio.

`anyio.CancelScope()` looks the running async library up (sniffio, the current task)
on every call, about 40% of a scope's cost (31.8k -> 19.1k instructions a scope entered
and left, issue 15), and a plain request enters two. The gateway only ever runs on
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
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["CancelScope", "shielded"]

if TYPE_CHECKING:
    from anyio import CancelScope
else:
    try:
        from anyio._backends._asyncio import CancelScope
    except ImportError:  # pragma: no cover - an anyio that moved its backend
        from anyio import CancelScope

T = TypeVar("T")


async def shielded(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, with cancellation held off as a shielded `CancelScope` holds it."""
    try:
        first = work.send(None)
    except StopIteration as done:  # ran to its end without suspending: nothing to shield
        result: T = done.value
        return result
    # INVARIANT: nothing suspended since `work` began, so no cancellation reached it, and
    # the scope is entered before the task waits on what `work` suspended on.
    with CancelScope(shield=True):  # never cancelled itself: it swallows nothing
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
