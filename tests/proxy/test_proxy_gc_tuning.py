"""`gateway serve` freezes what it loaded before serving; a policy reload unfreezes
(so the old policy can be collected) and freezes again later."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from proxy.gc_tuning import after_policy_reload, tune_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_serving_freezes_what_is_loaded_and_a_reload_refreezes_later() -> None:
    tune_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] > 700

    class OldPolicy:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the collector frees it

    async def body() -> tuple[int, bool, int]:
        old = OldPolicy()
        gc.freeze()  # loaded before serving, like the first policy
        del old
        after_policy_reload(asyncio.get_running_loop(), None, delay_s=0.05)
        unfrozen = gc.get_freeze_count()
        gc.collect()
        old_survives = any(type(o) is OldPolicy for o in gc.get_objects())
        await asyncio.sleep(0.2)
        return unfrozen, old_survives, gc.get_freeze_count()

    unfrozen, old_survives, refrozen = asyncio.run(body())
    assert unfrozen == 0
    assert not old_survives
    assert refrozen > 0


def test_a_process_that_never_froze_is_left_alone() -> None:
    assert gc.get_freeze_count() == 0

    async def body() -> int:
        assert after_policy_reload(asyncio.get_running_loop(), None, delay_s=0.01) is None
        await asyncio.sleep(0.05)
        return gc.get_freeze_count()

    assert asyncio.run(body()) == 0


@pytest.mark.usefixtures("restored_gc")
def test_a_second_reload_during_the_wait_restarts_it() -> None:
    tune_for_serving()

    # Read from the timer handles, not from sleeps timed against the delay: on a loaded
    # machine a sleep can overrun the first deadline and the refreeze would run early.
    async def body() -> tuple[bool, int, int]:
        loop = asyncio.get_running_loop()
        first = after_policy_reload(loop, None, delay_s=60)
        assert first is not None
        second = after_policy_reload(loop, first, delay_s=0.05)
        assert second is not None
        still_unfrozen = gc.get_freeze_count()
        await asyncio.sleep(0.3)
        return first.cancelled(), still_unfrozen, gc.get_freeze_count()

    first_cancelled, still_unfrozen, refrozen = asyncio.run(body())
    assert first_cancelled  # the first wait no longer refreezes...
    assert still_unfrozen == 0
    assert refrozen > 0  # ...the restarted one does
