"""`shielded`: a shielded cancel scope entered only once the work suspends (the suite
has no asyncio plugin: each test runs its own loop)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.cancel_scopes import CancelScope, shielded


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
