"""Group commit for the SQLite request path: one transaction for many requests' writes.

Every request writes twice (a reservation, a settlement). Committed one by one, each
write appends its own copies of the same few pages (the key's row, the organization's
row, the reservations table and its indexes) to the WAL: six pages and a commit
record per write. Under load dozens of requests reach their write in the same turn of
the event loop, so `WriteBatch` collects the writes of one turn and runs them in one
`BEGIN IMMEDIATE … COMMIT`, each inside its own savepoint so that one failing write
(an unknown key, say) is rolled back alone (a savepoint for the whole batch first, and
one per write only when a write failed). Every caller's future completes only
after the COMMIT: usage still survives `kill -9` once a call has returned. While the
whole batch runs under one savepoint its admissions and settlements may leave their
key's UPDATE pending (`sqlite_folds`), issued once before the commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from proxy.store.sqlite_folds import KeyFolds

__all__ = ["Outcome", "PendingWrite", "run_in_transaction"]

T = TypeVar("T")

Outcome = tuple[bool, Any]
"""(True, result) or (False, the exception the write raised)."""


class PendingWrite(Generic[T]):
    """One request's write waiting for the next group commit.

    `undo` runs (as a write of its own) when the caller stopped waiting before the
    result arrived, so that what the write created (a reservation) is not left
    holding budget until it expires.

    INVARIANT: `fn` changes nothing but the database through the connection it is
    given, and returns its result: it may run twice in one commit, the first attempt
    rolled back (`run_in_transaction`). `folds`: `fn` may leave its key's UPDATE
    pending in the batch's `KeyFolds` (`sqlite_folds`).
    """

    __slots__ = ("fn", "folds", "future", "undo")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], T],
        future: asyncio.Future[T],
        undo: Callable[[T], Callable[[sqlite3.Connection], None] | None] | None,
        folds: bool = False,
    ) -> None:
        self.fn = fn
        self.future = future
        self.undo = undo
        self.folds = folds


def run_in_transaction(
    conn: sqlite3.Connection,
    writes: list[Callable[[sqlite3.Connection], Any]],
    folds: KeyFolds | None = None,
    folding: list[bool] | None = None,
) -> list[Outcome]:
    """Run `writes` in the transaction `conn` has just begun, then commit.

    A write that raises is rolled back to its savepoint and its exception becomes its
    outcome; the others commit. If the commit itself fails, everything is rolled back
    and the error propagates (no write took effect).

    Writes almost never fail, so the batch first runs under one savepoint: two
    statements per write fewer than a savepoint each (two of the seven statements of
    a plain admission billed to credits). Only if one of them raises is that attempt
    rolled back and the batch run again write by write, each in its own savepoint;
    hence a write may run twice, and touches nothing but the connection
    (`PendingWrite`).

    `folds`: where the writes on `conn` leave their key's UPDATEs pending, and
    `folding`: which writes may (an admission or settlement of a key with rate
    limits). The batch lets
    them only during its first attempt of two writes or more, writes what is pending
    before any other write runs, and before the savepoint's end (so a failure there is
    retried write by write like any other): a write that does not fold never sees
    anything pending.
    """
    outcomes: list[Outcome] = []
    try:
        if len(writes) == 1:
            # Alone, a failed write rolls back the whole transaction: no savepoint needed.
            try:
                outcomes.append((True, writes[0](conn)))
            except Exception as exc:
                conn.execute("ROLLBACK")
                return [(False, exc)]
        else:
            outcomes = _all_or_each(conn, writes, folds, folding)
        conn.execute("COMMIT")
    except BaseException:
        if folds is not None:
            folds.active = False
            folds.discard()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _all_or_each(
    conn: sqlite3.Connection,
    writes: list[Callable[[sqlite3.Connection], Any]],
    folds: KeyFolds | None,
    folding: list[bool] | None,
) -> list[Outcome]:
    conn.execute("SAVEPOINT request_batch")
    try:
        if folds is None or folding is None:
            return [(True, write(conn)) for write in writes]
        folds.active = True
        outcomes: list[Outcome] = []
        try:
            for write, folds_its_key in zip(writes, folding, strict=True):
                if folds.pending and not folds_its_key:
                    folds.flush(conn)
                outcomes.append((True, write(conn)))
            folds.flush(conn)
        finally:
            folds.active = False
        return outcomes
    except Exception:
        if folds is not None:
            folds.discard()
        conn.execute("ROLLBACK TO request_batch")
    outcomes = []
    for write in writes:
        conn.execute("SAVEPOINT request_write")
        try:
            result = write(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO request_write")
            conn.execute("RELEASE request_write")
            outcomes.append((False, exc))
        else:
            conn.execute("RELEASE request_write")
            outcomes.append((True, result))
    return outcomes
