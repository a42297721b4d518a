"""A group commit's admissions of one key with rate limits write the key's row once
(`proxy.store.sqlite_folds`): whatever a batch holds (one key many times, two keys
interleaved, requests at a new second or in a new budget window, reserved figures that
expired, settlements, releases, a write that fails), every outcome and every figure the
store keeps is what the same batches give with each admission writing its own UPDATE."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.store import sqlite as sqlite_module
from proxy.store.base import (
    Admitted,
    BudgetWindow,
    Claim,
    NotFound,
    Queued,
    RateLimits,
    Refused,
    Reservation,
)
from proxy.store.sqlite import SqliteStore
from proxy.store.sqlite_folds import KeyFolds

NOW = 1_000_000.0
WINDOWS = ("2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z")
HIGH = 10**9
KEYS = 2
LIMIT = Decimal("0.08")  # each key's usage limit: eight requests of AMOUNT in flight
AMOUNT = Decimal("0.01")
MAX_PARALLEL = 9


def _claim(key_id: str, at: float, window: str, tokens: int) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id="default",
        amount=AMOUNT,
        project_id="default",
        key_budget=BudgetWindow(amount=Decimal("0.2"), start=window),
        key_limits=RateLimits(rpm=HIGH, tpm=400, max_parallel=MAX_PARALLEL),
        tokens=tokens,
        now=at,
    )


# admit: (which key, request time's step in seconds, budget window, token bound);
# settle/release: (which request in flight, tokens used, cost); unknown: an admission of
# a key that does not exist (it fails, and the batch is run again write by write).
_ADMIT = st.tuples(
    st.just("admit"),
    st.integers(0, KEYS - 1),
    st.sampled_from([0, 0, 0, 0, 1, 2]),
    st.integers(0, 1),
    st.integers(0, 90),
)
_END = st.tuples(
    st.sampled_from(["settle", "settle", "release"]),
    st.integers(0, 20),
    st.integers(0, 60),
    st.sampled_from(["0", "0.004", "0.000123", "0.01"]),
    st.just(0),
)
_UNKNOWN = ("unknown", 0, 0, 0, 0)
_OPS = st.lists(st.one_of(_ADMIT, _ADMIT, _ADMIT, _END), min_size=1, max_size=14)
# A batch: its writes, and where among them (if anywhere) one fails.
_BATCH = st.tuples(_OPS, st.sampled_from([None, None, None, 0, 3, 20]))
# Reservations expire three seconds of the store's clock after their admission, which
# moves 0.1 s at each reading (both runs read it as often): within a batch, too, an
# admission may find its key's reserved figures expired and count them again.
TTL = 3.05
TICK = 0.1


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        self.now += TICK
        return self.now


@given(batches=st.lists(_BATCH, min_size=1, max_size=7))
# A settlement after an admission of its key in the same batch: the admission's UPDATE
# is written before the settlement takes its row out of the key's reserved figures.
@example(
    batches=[
        ([("admit", 0, 0, 0, 5)], None),
        ([("admit", 0, 0, 0, 5), ("settle", 0, 0, "0.01", 0)], None),
    ]
)
# The key's oldest reservation expires between two of its admissions in one batch: the
# second counts its reserved figures again, the first's UPDATE written before.
@example(
    batches=[
        ([("admit", 0, 0, 0, 5)], None),
        *[([("admit", 1, 0, 0, 5)] * 2, None)] * 9,
        ([("admit", 0, 0, 0, 5)] * 3, None),
    ]
)
# A settlement joins the pending admission of its key, then an admission in the next
# budget window moves the key's budget slot: the slot's usage, the settlement's cost in
# it, goes to `budget_usage` (its UPDATE written before the slot is read).
@example(
    batches=[
        ([("admit", 0, 0, 0, 5)], None),
        ([("admit", 0, 0, 0, 5), ("settle", 0, 9, "0.004", 0), ("admit", 0, 0, 1, 5)], None),
    ]
)
@settings(max_examples=80, deadline=None)
def test_a_folded_batch_leaves_what_its_unfolded_writes_leave(
    batches: list[tuple[list[Any], int | None]],
) -> None:
    writes = [
        ops if fails is None else [*ops[:fails], _UNKNOWN, *ops[fails:]] for ops, fails in batches
    ]
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(sqlite_module, "now_epoch", clock):
        folded = asyncio.run(_run(Path(tmp) / "folded.db", writes))
        clock.now = NOW
        with mock.patch.object(sqlite_module, "KeyFolds", _NeverFolds):
            each = asyncio.run(_run(Path(tmp) / "each.db", writes))
    assert folded == each


class _NeverFolds(KeyFolds):
    """Batches whose admissions each write their own UPDATE (as before folding)."""

    @property  # type: ignore[override]
    def active(self) -> bool:
        return False

    @active.setter
    def active(self, value: bool) -> None:
        pass


def test_a_batch_of_one_key_writes_its_row_once(tmp_path: Path) -> None:
    statements: list[str] = []

    async def body() -> tuple[list[Any], tuple[Any, ...]]:
        store, keys = await _open(tmp_path / "gateway.db")
        try:
            held = await store.reserve(keys[1], "default", AMOUNT)  # another request in flight
            assert held is not None
            # The key's first admission counts its reserved figures (an UPDATE of its own).
            first = await store.admit(_claim(keys[0], NOW, WINDOWS[0], 10), "t")
            assert isinstance(first, Admitted)
            assert store._inline is not None
            store._inline.set_trace_callback(statements.append)
            claims = [_claim(keys[0], NOW, WINDOWS[0], 10 + n) for n in range(5)]
            outcomes = await asyncio.gather(
                *(store.admit(claim, f"t{n}") for n, claim in enumerate(claims))
            )
            store._inline.set_trace_callback(None)
            return [first, *outcomes], await _figures(store, keys)
        finally:
            await store.close()

    with mock.patch.object(sqlite_module, "now_epoch", lambda: NOW):
        outcomes, (rows, *_) = asyncio.run(body())
    counted = []
    for outcome in outcomes:
        assert isinstance(outcome, Admitted)
        assert outcome.reservation.rate is not None
        assert outcome.reservation.rate.key is not None
        counted.append(
            (outcome.reservation.rate.key.requests, outcome.reservation.rate.key.parallel)
        )
    # Each admission of the batch counted the ones before it, written or not.
    assert counted == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    key_updates = [s for s in statements if s.startswith("UPDATE api_keys")]
    assert len(key_updates) == 1, statements
    # Six requests at NOW of 10 + (10..14) tokens; six reservations of 0.01 (10**10 units).
    assert rows[0][4:7] == (NOW, 6, 70)
    assert rows[0][1:3] == (6 * 10**10, 6)


async def _open(path: Path, ttl: float = 600.0) -> tuple[SqliteStore, list[str]]:
    store = SqliteStore(str(path), reservation_ttl=ttl)
    await store.migrate()
    await store.ensure_defaults()
    await store.set_credits("default", Decimal(HIGH))
    keys = [(await store.create_key("default", LIMIT, f"k{n}"))[0].id for n in range(KEYS)]
    return store, keys


async def _run(path: Path, batches: list[list[Any]]) -> list[Any]:
    store, keys = await _open(path, TTL)
    seen: list[Any] = []
    held: list[Reservation] = []
    at = NOW
    try:
        # A request in flight throughout: no write commits alone, each waits for a batch.
        # Its row holds no units (a plain admission's), so the second key's reserved
        # figures are not kept (its admissions fold their rate slot only), the first's are.
        anchor = await store.reserve(keys[1], "default", Decimal("0.001"))
        assert anchor is not None
        for number, batch in enumerate(batches):
            calls = []
            for index, (action, first, second, third, fourth) in enumerate(batch):
                ticket = f"t{number}.{index}"
                if action == "admit":
                    at += second
                    claim = _claim(keys[first], at, WINDOWS[third], fourth)
                    calls.append(store.admit(claim, ticket))
                elif action == "unknown":
                    calls.append(store.admit(_claim("no-such-key", at, WINDOWS[0], 1), ticket))
                elif held:
                    reservation = held.pop(first % len(held))
                    if action == "settle":
                        calls.append(store.settle(reservation, Decimal(third), tokens=second))
                    else:
                        calls.append(store.release(reservation))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            for outcome in outcomes:
                seen.append(_described(outcome, keys))
                if isinstance(outcome, Admitted):
                    held.append(outcome.reservation)
        seen.append(await _figures(store, keys))
    finally:
        await store.close()
    return seen


def _described(outcome: Any, keys: list[str]) -> Any:
    if isinstance(outcome, Admitted):
        reservation = outcome.reservation
        return ("admitted", keys.index(reservation.key_id), reservation.rate, reservation.units)
    if isinstance(outcome, Refused | Queued):
        return outcome
    if isinstance(outcome, NotFound):
        return "not found"
    assert outcome is None, outcome
    return None


async def _figures(store: SqliteStore, keys: list[str]) -> tuple[Any, ...]:
    """Every figure the store keeps of the keys and their windows, the keys' ids
    replaced by their order of creation."""

    def read(conn: sqlite3.Connection) -> tuple[Any, ...]:
        def subject(text: str) -> str:
            for number, key_id in enumerate(keys):
                text = text.replace(key_id, str(number))
            return text

        rows = conn.execute(
            "SELECT usage, flight_units, flight_count, flight_until, slot_at, slot_requests, "
            "slot_tokens, slot_window, slot_usage FROM api_keys WHERE id IN (?, ?) "
            "ORDER BY description",
            keys,
        ).fetchall()
        buckets = sorted(
            (subject(s), at, r, t)
            for s, at, r, t in conn.execute("SELECT * FROM rate_buckets").fetchall()
        )
        totals = sorted(
            (subject(row[0]), *row[1:])
            for row in conn.execute(
                "SELECT subject, requests, tokens, oldest FROM rate_totals"
            ).fetchall()
        )
        budgets = sorted(
            (subject(s), w, u) for s, w, u in conn.execute("SELECT * FROM budget_usage").fetchall()
        )
        reservations = sorted(
            (keys.index(k), amount, units, window)
            for k, amount, units, window in conn.execute(
                "SELECT key_id, amount, units, key_window FROM reservations"
            ).fetchall()
        )
        (credits,) = conn.execute(
            "SELECT credits FROM organizations WHERE id = 'default'"
        ).fetchone()
        return rows, buckets, totals, budgets, reservations, credits

    return await store._run(read)


def _controls_claim(key_id: str, amount: str, budget: str) -> Claim:
    return Claim(
        key_id=key_id,
        organization_id="default",
        amount=Decimal(amount),
        project_id="default",
        key_budget=BudgetWindow(amount=Decimal(budget), start=WINDOWS[0]),
        key_limits=RateLimits(rpm=HIGH, tpm=HIGH, max_parallel=HIGH),
        tokens=20,
        now=NOW,
    )


async def _settled_between(path: Path, limit: Decimal, budget: str) -> tuple[list[Any], int]:
    """Four admissions of 0.01; then in one batch an admission, a settlement of the
    first at 0.02 (and 5 tokens), and another admission, which the settlement's cost
    decides: the outcomes and the figures, and how many UPDATEs of the key's row the
    batch wrote (but a queued ticket's)."""
    store = SqliteStore(str(path))
    statements: list[str] = []
    try:
        await store.migrate()
        await store.ensure_defaults()
        await store.set_credits("default", Decimal(HIGH))
        key = (await store.create_key("default", limit, "k"))[0].id
        other = (await store.create_key("default", None, "other"))[0].id
        anchor = await store.reserve(other, "default", Decimal("0.001"))
        assert anchor is not None
        claim = _controls_claim(key, "0.01", budget)
        first = await asyncio.gather(*(store.admit(claim, f"a{n}") for n in range(4)))
        held = first[0]
        assert isinstance(held, Admitted)
        assert store._inline is not None
        store._inline.set_trace_callback(statements.append)
        batch = await asyncio.gather(
            store.admit(claim, "b0"),
            store.settle(held.reservation, Decimal("0.02"), tokens=5),
            store.admit(claim, "b1"),
        )
        store._inline.set_trace_callback(None)
        seen = [_described(outcome, [key, other]) for outcome in (*first, *batch)]
        seen.append(await _figures(store, [key, other]))
    finally:
        await store.close()
    return seen, sum(
        s.startswith("UPDATE api_keys SET") and "queue_until" not in s for s in statements
    )


def test_a_settlement_joins_its_keys_pending_update_and_its_cost_counts_at_once(
    tmp_path: Path,
) -> None:
    # The key's usage limit (0.055): after the settlement, usage 0.02 + 0.04 in flight
    # leaves no room for the second admission; its budget (0.055): the same in its window.
    for number, (limit, budget) in enumerate(
        [(Decimal("0.055"), "1000"), (None, "0.055"), (None, "1000")]
    ):
        with mock.patch.object(sqlite_module, "now_epoch", lambda: NOW):
            folded, folded_updates = asyncio.run(
                _settled_between(tmp_path / f"folded{number}.db", limit, budget)
            )
            with mock.patch.object(sqlite_module, "KeyFolds", _NeverFolds):
                each, each_updates = asyncio.run(
                    _settled_between(tmp_path / f"each{number}.db", limit, budget)
                )
        assert folded == each
        refused = budget != "1000" or limit is not None
        assert isinstance(folded[-2], Queued) is refused, folded
        assert isinstance(folded[-4], tuple) and folded[-4][0] == "admitted"
        # The settlement wrote its usage, tokens and cost in the batch's one UPDATE of
        # the key's row, with the admissions' (each its own: two or three).
        assert (folded_updates, each_updates) == (1, 2 if refused else 3)
