"""One UPDATE of a key's row for a group commit's run of its admissions (SQLite).

At dozens of concurrent requests a group commit (`sqlite_batch`) holds as many
admissions of one key with rate limits, and each ended with its own UPDATE of the
key's row: its rate slot's requests and tokens, its reserved figures (~20k
instructions a statement, nearly all of it the statement's own cost). Those UPDATEs
only add, and take a minimum, so a run of them is one UPDATE of their sums: the
admissions leave theirs pending here (`KeyFolds.add`), and the batch issues them before
it commits (`KeyFolds.flush`).

INVARIANT: what is pending for a key, added to its row as the row reads, is the row as
the admissions one by one would have left it. So a statement that reads the row (but
the admission's own read, which adds what is pending: `pending`), or writes it other
than by adding, comes only after `flush`; every write other than a rated admission
flushes first, and a rated admission flushes before anything else it does to the row.
The batch runs its writes one by one after a failure (`run_in_transaction`): then
nothing is pending (`active` is False) and each admission issues its own UPDATE.
"""

from __future__ import annotations

import sqlite3

__all__ = ["AdmissionFold", "KeyFolds"]

# The folded UPDATE: the admissions' requests and tokens in the key's rate slot (they
# were all counted at the second it holds), with their rows' units, count and earliest
# expiry in the key's reserved figures when those are kept.
_FOLD_WITH_FIGURES = (
    "UPDATE api_keys SET slot_requests = slot_requests + ?, slot_tokens = slot_tokens + ?, "
    "flight_units = flight_units + ?, flight_count = flight_count + ?, "
    "flight_until = min(flight_until, ?) WHERE id = ?"
)
_FOLD_SLOT_ONLY = (
    "UPDATE api_keys SET slot_requests = slot_requests + ?, slot_tokens = slot_tokens + ? "
    "WHERE id = ?"
)


class AdmissionFold:
    """What a batch's admissions of one key add to its row, not yet written. `units`
    None: the key's reserved figures are not kept, the admissions add none."""

    __slots__ = ("count", "requests", "tokens", "units", "until")

    def __init__(self, tokens: int, units: int | None, until: float) -> None:
        self.requests = 1
        self.tokens = tokens
        self.units = units
        self.count = 1
        self.until = until


class KeyFolds:
    """The admissions pending on one connection's transaction, by key (see the module
    doc). `active`: set by the batch while its writes may fold."""

    __slots__ = ("active", "pending")

    def __init__(self) -> None:
        self.active = False
        self.pending: dict[str, AdmissionFold] = {}

    def add(
        self, conn: sqlite3.Connection, key_id: str, tokens: int, units: int | None, until: float
    ) -> None:
        """An admission of `key_id` counted at the second its rate slot holds, with
        `units` joining its kept figures (None: not kept)."""
        fold = self.pending.get(key_id)
        if fold is None:
            self.pending[key_id] = AdmissionFold(tokens, units, until)
            return
        if (fold.units is None) != (units is None):
            # Not one shape of UPDATE: the ones pending go first.
            self.flush(conn)
            self.pending[key_id] = AdmissionFold(tokens, units, until)
            return
        fold.requests += 1
        fold.tokens += tokens
        if units is not None and fold.units is not None:
            fold.units += units
            fold.count += 1
            fold.until = min(fold.until, until)

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write what is pending (in the caller's transaction)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        for key_id, fold in pending.items():
            if fold.units is None:
                conn.execute(_FOLD_SLOT_ONLY, (fold.requests, fold.tokens, key_id))
            else:
                conn.execute(
                    _FOLD_WITH_FIGURES,
                    (fold.requests, fold.tokens, fold.units, fold.count, fold.until, key_id),
                )

    def discard(self) -> None:
        """Forget what is pending: the transaction (or savepoint) it belonged to was
        rolled back."""
        self.pending = {}
