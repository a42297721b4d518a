"""A fake event-loop clock for tests of code that keeps its own timers: `time()` and
`call_at` / `call_later` / `call_soon` as asyncio's loop offers them, timers that run
only when the test `advance`s the clock, so the moments are the test's, not the machine's.
Futures, when asked for, come from a real loop."""

from __future__ import annotations

import asyncio
from typing import Any


class FakeTimer:
    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.now = 0.0
        self.timers: list[FakeTimer] = []
        self.made = 0  # timers made so far

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[None]:
        assert self.loop is not None, "FakeClock(loop) makes futures on a real loop"
        return self.loop.create_future()

    def call_at(self, when: float, callback: Any, *args: Any) -> FakeTimer:
        timer = FakeTimer(when, callback, args)
        self.timers.append(timer)
        self.made += 1
        return timer

    def call_later(self, delay: float, callback: Any, *args: Any) -> FakeTimer:
        return self.call_at(self.now + delay, callback, *args)

    def call_soon(self, callback: Any, *args: Any) -> FakeTimer:
        return self.call_later(0.0, callback, *args)

    def armed(self) -> int:
        return sum(not t.cancelled for t in self.timers)

    def advance(self, to: float) -> None:
        """Run every timer due by `to`, in order, moving the clock to each."""
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= to]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback(*timer.args)
        self.now = to
