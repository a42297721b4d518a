"""`shielded`: a shielded cancel scope entered only once the work suspends; `Departure`:
a client's departure cancelling its request's work as a cancel scope would, shields
honoured (the suite has no asyncio plugin: each test runs its own loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from proxy.cancel_scopes import CancelScope, Departure, Shield, shielded


async def _at_once() -> str:
    return "done"


def test_work_that_never_suspends_gives_its_result() -> None:
    assert asyncio.run(shielded(_at_once())) == "done"


def test_a_cancellation_waits_for_suspended_work_to_end() -> None:
    steps: list[str] = []

    async def work(release: asyncio.Event) -> str:
        steps.append("began")
        await release.wait()
        await asyncio.sleep(0)
        steps.append("ended")
        return "settled"

    async def request() -> None:
        release = asyncio.Event()
        loop = asyncio.get_running_loop()
        with CancelScope() as scope:
            loop.call_soon(scope.cancel)
            loop.call_later(0.01, release.set)
            steps.append(await shielded(work(release)))
            await asyncio.sleep(5)  # the cancellation lands here, once the work ended
            steps.append("not reached")
        assert scope.cancelled_caught

    asyncio.run(asyncio.wait_for(request(), 5))
    assert steps == ["began", "ended", "settled"]


def test_errors_reach_the_caller_before_and_after_suspending() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="at once"):
        asyncio.run(shielded(fails_at_once()))
    with pytest.raises(KeyError, match="later"):
        asyncio.run(shielded(fails_later()))


def test_work_gets_the_values_it_waits_for() -> None:
    async def work() -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        loop.call_soon(future.set_result, 41)
        return await future + 1

    assert asyncio.run(shielded(work())) == 42


def test_a_task_cancelled_outside_any_scope_still_cancels_the_work() -> None:
    """Native `Task.cancel` passes a shielded anyio scope, and so passes this one."""
    ended: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(5)
        finally:
            ended.append("work")

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(shielded(work()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ended == ["work"]


def _request(
    work: Callable[[], Coroutine[Any, Any, str]], leave_after: float
) -> tuple[str | None, int]:
    """`work` run as a request whose client leaves `leave_after` seconds in: what
    `Departure.run` answered, and the task's cancellation requests left pending."""

    async def request() -> tuple[str | None, int]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        departure = Departure(loop, task)
        loop.call_later(leave_after, departure.leave)
        answer = await departure.run(work())
        return answer, task.cancelling()

    return asyncio.run(asyncio.wait_for(request(), 5))


def test_a_departure_cancels_work_waiting_unshielded() -> None:
    steps: list[str] = []

    async def work() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        return "not reached"

    assert _request(work, 0.01) == (None, 0)
    assert steps == ["cancelled"]


def test_a_departure_waits_for_shielded_work_then_cancels_the_next_wait() -> None:
    steps: list[str] = []

    async def work() -> str:
        with Shield():
            await asyncio.sleep(0.05)  # the client leaves meanwhile
            steps.append("settled")
        await asyncio.sleep(5)
        return "not reached"

    assert _request(work, 0.01) == (None, 0)
    assert steps == ["settled"]


def test_a_departure_waits_for_suspended_shielded_work() -> None:
    steps: list[str] = []

    async def settle() -> str:
        await asyncio.sleep(0.05)
        steps.append("settled")
        return "settled"

    async def work() -> str:
        steps.append(await shielded(settle()))
        await asyncio.sleep(5)
        return "not reached"

    assert _request(work, 0.01) == (None, 0)
    assert steps == ["settled", "settled"]


def test_work_that_ends_with_its_shield_gives_its_answer() -> None:
    """As anyio delivers: never to the running task, so work that ends in the step its
    shield ends in ends as it would have."""

    async def work() -> str:
        with Shield():
            await asyncio.sleep(0.05)
        return "answered"

    assert _request(work, 0.01) == ("answered", 0)


def test_work_done_before_the_departure_gives_its_answer() -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        return "answered"

    assert _request(work, 0.01) == ("answered", 0)


def test_another_cancellation_is_not_taken_for_the_departure() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        async def request() -> str | None:
            task = asyncio.current_task()
            assert task is not None
            departure = Departure(loop, task)

            async def work() -> str:
                started.set()
                await asyncio.sleep(5)
                return "not reached"

            loop.call_later(0.01, departure.leave)
            return await departure.run(work())

        task = loop.create_task(request())
        await started.wait()
        # The server stops, say, in the loop turn the client leaves in, just after.
        loop.call_later(0.01, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 5))


def test_work_that_catches_the_cancellation_is_cancelled_at_its_next_wait() -> None:
    """Level-triggered, as a cancelled anyio scope: every unshielded wait is cancelled
    until the work ends."""
    steps: list[str] = []

    async def work() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            steps.append("caught")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            steps.append("cancelled again")
            raise
        return "not reached"

    assert _request(work, 0.01) == (None, 0)
    assert steps == ["caught", "cancelled again"]


def test_a_task_started_by_the_work_does_not_hold_the_departure_off() -> None:
    steps: list[str] = []
    shielded_now = asyncio.Event()

    async def background() -> None:
        with Shield():
            shielded_now.set()
            await asyncio.sleep(1)

    async def work() -> str:
        helper = asyncio.get_running_loop().create_task(background())
        # The helper is in its shield well before the client leaves (0.5 s in): an event,
        # not a shorter sleep, so a loaded machine cannot reorder the two.
        await shielded_now.wait()
        try:
            await asyncio.sleep(5)
        finally:
            steps.append(f"work cancelled, helper done: {helper.done()}")
            helper.cancel()
        return "not reached"

    assert _request(work, 0.5) == (None, 0)
    assert steps == ["work cancelled, helper done: False"]
