"""One UPDATE of a key's row for a group commit's run of its admissions and
settlements (SQLite).

At dozens of concurrent requests a group commit (`sqlite_batch`) holds as many
admissions and settlements of one key with rate limits, and each ended with its own
UPDATE of the key's row: an admission's rate slot requests and tokens and reserved
figures, a settlement's usage, slot tokens, budget slot usage and reserved figures
(~20k instructions a statement, and each of a settlement's two `decimal_add` calls from
SQLite into Python ~8k more). The admissions only add, and take a minimum; so a run of
them is one UPDATE of their sums: the admissions leave theirs pending here
(`KeyFolds.add`), and the batch issues them before it commits (`KeyFolds.flush`).

A settlement of a key whose admission is pending joins it (`KeyFolds.settle`): the
pending admission read the key's row in this transaction, so the fold knows what the
settlement's UPDATE depends on there: the second its rate slot holds and the window its
budget slot holds (which only a write that does not fold changes, after a flush), its
usage and budget slot usage as text (the settlement's sums are made here, in order, by
the same `decimal_add` SQLite would call, and written as they stand), and its reserved
figures' count (a settlement that would take out the key's last reservation, whose
`CASE` resets `flight_until`, does not join: never the case while an admission of the
key is pending, whose own reservation is in flight). A settlement of a key with nothing
pending runs its own UPDATE, as before.

INVARIANT: what is pending for a key, applied to its row as the row reads, is the row as
the admissions and settlements one by one would have left it. So a statement that reads
the row (but the admission's own read, which applies what is pending: `pending`), or
writes it other than by the fold, comes only after `flush`; every write other than a
rated admission or a rated settlement flushes first, and those flush before anything
else they do to the row that the fold does not know.
The batch runs its writes one by one after a failure (`run_in_transaction`): then
nothing is pending (`active` is False) and each write issues its own UPDATE.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

__all__ = ["KeyFold", "KeyFolds", "decimal_add"]


def decimal_add(total: str, amount: str) -> str:
    """Exact money addition on stored decimal text: SQL's `decimal_add`
    (`sqlite._add_money_functions`), and the folded settlements' sums."""
    return str(Decimal(total) + Decimal(amount))


def _fold_update(usage: bool, window: bool, flight: bool) -> str:
    """The folded UPDATE: `usage` and `window` (the budget slot's usage) as the
    settlements left them; the rate slot's requests and tokens added; with `flight` the
    reserved figures' units and count added and the earliest expiry taken."""
    sets = []
    if usage:
        sets.append("usage = ?")
    if window:
        sets.append("slot_usage = ?")
    sets.append("slot_requests = slot_requests + ?, slot_tokens = slot_tokens + ?")
    if flight:
        sets.append("flight_units = flight_units + ?, flight_count = flight_count + ?")
        sets.append("flight_until = min(flight_until, ?)")
    return f"UPDATE api_keys SET {', '.join(sets)} WHERE id = ?"  # noqa: S608 - constants


# Built once: each a statement from one string object (the statement cache's key).
_FOLD_UPDATES = {
    (usage, window, flight): _fold_update(usage, window, flight)
    for usage in (False, True)
    for window in (False, True)
    for flight in (False, True)
}


class KeyFold:
    """What a batch's admissions and settlements of one key change in its row, not yet
    written, and what of the row the fold knows. `units` None: the key's reserved
    figures are not kept, the admissions add none (and no settlement that takes a row
    out of them joins). `slot_at`: the second the rate slot holds; `window`: the window
    the budget slot holds (None: not known); `usage`, `window_usage`: the row's usage and
    budget slot usage as text (`usage` None: no settlement yet, `base_usage` stands;
    `window_settled`: a settlement changed `window_usage`);
    `flight_count`: the row's reserved figures' count with what is pending (`units` not
    None)."""

    __slots__ = (
        "base_usage",
        "count",
        "flight_count",
        "requests",
        "slot_at",
        "tokens",
        "units",
        "until",
        "usage",
        "window",
        "window_settled",
        "window_usage",
    )

    def __init__(
        self,
        tokens: int,
        units: int | None,
        until: float,
        slot_at: float,
        window: str | None,
        window_usage: str | None,
        flight_count: int,
        base_usage: str,
    ) -> None:
        self.requests = 1
        self.tokens = tokens
        self.units = units
        self.count = 1
        self.until = until
        self.slot_at = slot_at
        self.window = window
        self.window_usage = window_usage
        self.base_usage = base_usage
        self.usage: str | None = None
        self.window_settled = False
        self.flight_count = flight_count


class KeyFolds:
    """The admissions and settlements pending on one connection's transaction, by key
    (see the module doc). `active`: set by the batch while its writes may fold."""

    __slots__ = ("active", "pending")

    def __init__(self) -> None:
        self.active = False
        self.pending: dict[str, KeyFold] = {}

    def add(
        self,
        conn: sqlite3.Connection,
        key_id: str,
        tokens: int,
        units: int | None,
        until: float,
        slot_at: float,
        window: tuple[str, str] | None,
        flight_count: int,
        usage: str,
    ) -> None:
        """An admission of `key_id` counted at the second `slot_at` its rate slot holds,
        with `units` joining its kept figures (None: not kept), whose count is then
        `flight_count`; `window`: the window its budget slot holds and that slot's usage
        as read (None: no budget); `usage`: the key's usage as read."""
        fold = self.pending.get(key_id)
        if fold is not None and (fold.units is None) != (units is None):
            # Not one shape of UPDATE: the ones pending go first.
            self.flush(conn)
            fold = None
        if fold is None:
            start, window_usage = (None, None) if window is None else window
            self.pending[key_id] = KeyFold(
                tokens, units, until, slot_at, start, window_usage, flight_count, usage
            )
            return
        fold.requests += 1
        fold.tokens += tokens
        if units is not None and fold.units is not None:
            fold.units += units
            fold.count += 1
            fold.until = min(fold.until, until)
            fold.flight_count = flight_count
        if window is not None and fold.window is None:
            fold.window, fold.window_usage = window

    def settle(
        self,
        key_id: str,
        cost_text: str,
        units: int | None,
        tokens: int,
        rate_at: float | None,
        window: str | None,
    ) -> tuple[bool, bool] | None:
        """A settlement of `key_id` joins its pending fold, if it can: its `cost_text`
        added to the usage, `units` (None: its row leaves none, or was gone) taken out of
        the reserved figures, `tokens` added to the rate slot if it holds `rate_at`
        (None: no change of tokens), the cost to the budget slot if it holds `window`.
        Returns whether the slot took the tokens and whether the budget slot took the
        cost (the rest is the caller's), or None: nothing of the key is pending, or its
        figures are not known, and the caller writes its own UPDATE (after `flush`)."""
        fold = self.pending.get(key_id)
        if fold is None or (
            # Its row leaves figures the fold does not hold, or leaves the key's last
            # (its `CASE`: never so while a pending admission's row is in flight).
            units is not None and (fold.units is None or fold.flight_count <= 1)
        ):
            return None
        if window is not None and fold.window is None:
            return None
        fold.usage = decimal_add(fold.base_usage if fold.usage is None else fold.usage, cost_text)
        rate_done = rate_at is not None and rate_at == fold.slot_at
        if rate_done:
            fold.tokens += tokens
        window_done = window is not None and window == fold.window
        if window_done:
            assert fold.window_usage is not None
            fold.window_usage = decimal_add(fold.window_usage, cost_text)
            fold.window_settled = True
        if units is not None and fold.units is not None:
            fold.flight_count -= 1
            fold.units -= units
            fold.count -= 1
        return rate_done, window_done

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write what is pending (in the caller's transaction)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        for key_id, fold in pending.items():
            params: list[object] = []
            if fold.usage is not None:
                params.append(fold.usage)
            settled_window = fold.window_settled
            if settled_window:
                params.append(fold.window_usage)
            params += (fold.requests, fold.tokens)
            if fold.units is not None:
                params += (fold.units, fold.count, fold.until)
            params.append(key_id)
            conn.execute(
                _FOLD_UPDATES[fold.usage is not None, settled_window, fold.units is not None],
                params,
            )

    def discard(self) -> None:
        """Forget what is pending: the transaction (or savepoint) it belonged to was
        rolled back."""
        self.pending = {}
