"""A key's rate second and budget window kept in its own row on SQLite (`api_keys.slot_*`,
`_key_rate_slot`, `_key_window_slot`): whatever the order of admissions (request times
and budget windows going forward, and now and then back), settlements, releases, undos
and restarts, the key's rate window counts exactly the requests and tokens a recount
of them gives, and each budget window's usage is exactly the costs settled in it,
written as the sum of those costs."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.store import sqlite as sqlite_module
from proxy.store.base import Admitted, BudgetWindow, Claim, RateLimits, Reservation
from proxy.store.common import RATE_WINDOW_SECONDS
from proxy.store.sqlite import SqliteStore

START = 1_000_000.0
WINDOWS = ("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z", "2026-12-09T00:00:00Z")
HIGH = 10**9


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _claim(key_id: str, now: float, window: str, tokens: int) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id="default",
        amount=Decimal("0.01"),
        project_id="default",
        key_budget=BudgetWindow(amount=Decimal(HIGH), start=window),
        key_limits=RateLimits(rpm=HIGH, tpm=HIGH, max_parallel=HIGH),
        tokens=tokens,
        now=now,
    )


# admit: (request time's step back or forward in seconds, budget window, token bound);
# settle/release/undo: (which request in flight, tokens used, cost); restart.
_ADMIT = st.tuples(
    st.just("admit"),
    st.sampled_from([0, 0, 0, 1, 1, 2, 30, 61, -1, -3]),
    st.sampled_from([0, 0, 0, 1, 2, -1]),
    st.integers(0, 50),
)
_END = st.tuples(
    st.sampled_from(["settle", "settle", "release", "undo"]),
    st.integers(0, 30),
    st.integers(0, 60),
    st.sampled_from(["0", "0.10", "0.000123", "0.5", "1E-13", "1.0000000000000000", "0.00"]),
)
_RESTART = st.tuples(st.just("restart"), st.just(0), st.just(0), st.just(0))


@given(steps=st.lists(st.one_of(_ADMIT, _ADMIT, _END, _END, _RESTART), max_size=40))
@settings(max_examples=150, deadline=None)
def test_the_key_window_and_budget_match_a_recount(steps: list[tuple[Any, ...]]) -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(sqlite_module, "now_epoch", clock):
        asyncio.run(_walk(Path(tmp) / "slots.db", steps))


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.migrate()
    return store


async def _walk(path: Path, steps: list[tuple[Any, ...]]) -> None:
    store = await _open(path)
    await store.ensure_defaults()
    await store.set_credits("default", Decimal(HIGH))
    key, _ = await store.create_key("default", None, "slots")
    at, latest, window = START, START, 1
    # Per admitted request: [request time, tokens counted, still counted as a request].
    counted: list[list[Any]] = []
    held: list[tuple[Reservation, int]] = []  # in flight: the reservation, its `counted`
    charged: dict[str, Decimal] = {}  # per budget window: the costs settled in it
    try:
        for number, (action, first, second, third) in enumerate(steps):
            if action == "admit":
                at = max(START - 10, at + first)
                latest = max(latest, at)
                window = min(max(window + second, 0), len(WINDOWS) - 1)
                claim = _claim(key.id, at, WINDOWS[window], third)
                outcome = await store.admit(claim, f"t{number}")
                assert isinstance(outcome, Admitted)
                held.append((outcome.reservation, len(counted)))
                counted.append([at, third, True])
            elif action == "restart":
                await store.close()
                store = await _open(path)
            elif held:
                reservation, index = held.pop(first % len(held))
                if action == "settle":
                    cost = Decimal(third)
                    await store.settle(reservation, cost, tokens=second)
                    counted[index][1] = second
                    assert reservation.key_window is not None
                    before = charged.get(reservation.key_window, Decimal(0))
                    charged[reservation.key_window] = before + cost
                elif action == "release":
                    await store.release(reservation)
                    counted[index][1] = 0
                else:
                    await store._request_write(sqlite_module._undoing(reservation))
                    counted[index][1:] = [0, False]
            # The key's window at the latest request time (the seconds that left the
            # window have left it for good): what a recount says.
            state = await store.rate_windows(key.id, "default", latest)
            inside = [
                (when, tokens)
                for when, tokens, still in counted
                if still and latest - RATE_WINDOW_SECONDS < when
            ]
            assert state.key is not None
            assert (state.key.requests, state.key.tokens) == (
                len(inside),
                sum(tokens for _, tokens in inside),
            ), (counted, latest)
            for start in WINDOWS:
                figures, _ = await store.budget_usage((key.id, start), None)
                expected = charged.get(start, Decimal(0))
                assert figures.usage == expected
                # Written as the sum of its costs (every stored digit), as before.
                assert str(figures.usage) == str(expected) or start not in charged
    finally:
        await store.close()
