"""A request starts watching for its client leaving `_WATCH_AFTER_S` after it began,
if it is still running then (`proxy.api_route.ClientWatches`): one timer serves every
request in flight, and requests that end first never start a watcher. Driven on a fake
clock: the moments are the test's, not the machine's."""

from __future__ import annotations

from typing import Any

from fake_clock import FakeClock

from proxy.api_route import _WATCH_AFTER_S, ClientWatches


def test_requests_that_end_first_start_nothing_and_share_one_timer() -> None:
    loop, watches = FakeClock(), ClientWatches()
    started: list[int] = []
    for number in range(100):
        loop.advance(number * 0.001)
        entry = watches.add(loop, lambda n=number: started.append(n))  # type: ignore[misc]
        loop.advance(number * 0.001 + 0.0005)
        entry[1] = None  # answered in half a millisecond
    loop.advance(10.0)
    assert started == []
    assert loop.made <= 3  # not one per request


def test_a_request_still_running_starts_watching_at_its_moment_in_order() -> None:
    loop, watches = FakeClock(), ClientWatches()
    started: list[tuple[str, float]] = []

    def start(name: str) -> Any:
        return lambda: started.append((name, loop.now))

    first = watches.add(loop, start("first"))  # at 0
    loop.advance(0.01)
    watches.add(loop, start("long"))  # at 0.01, runs on
    loop.advance(0.02)
    third = watches.add(loop, start("third"))  # at 0.02
    loop.advance(0.03)
    first[1] = None
    loop.advance(0.04)
    third[1] = None
    loop.advance(0.2)
    assert started == [("long", 0.01 + _WATCH_AFTER_S)]


def test_each_long_request_starts_at_its_own_moment() -> None:
    loop, watches = FakeClock(), ClientWatches()
    started: list[tuple[int, float]] = []
    began = [0.0, 0.001, 0.03, 0.2, 0.21]
    for number, moment in enumerate(began):
        loop.advance(moment)
        watches.add(loop, lambda n=number: started.append((n, loop.now)))  # type: ignore[misc]
    loop.advance(1.0)
    assert started == [(n, moment + _WATCH_AFTER_S) for n, moment in enumerate(began)]
