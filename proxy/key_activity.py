"""Per-key activity: when a key was last used and how many requests and tokens it served.

Counting in the store on every request would add a write to the hot path, so each
gateway instance adds up its own requests in memory and `flush` adds them to the
store's totals (`Store.add_key_activity`, an upsert that adds, so several instances
sharing a database each contribute theirs) every `interval` seconds and at shutdown
(`stop`, then the last flush: a graceful stop loses nothing). On SQLite the flush joins
the request path's group commit, so it costs no transaction of its own. What a crash
loses is at most the last interval's counts, never usage or money (those are the
ledger's). A request counts once its key is known, allowed or not: "last used"
is the last time anyone presented the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from proxy.store.base import KeyActivity, Store

__all__ = ["DEFAULT_ACTIVITY_INTERVAL", "ActivityRecorder"]

DEFAULT_ACTIVITY_INTERVAL = 2.0
_log = logging.getLogger("gateway.store")


class _Counts:
    __slots__ = ("completion_tokens", "last_used_at", "prompt_tokens", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.last_used_at = ""


class ActivityRecorder:
    """Counts requests per key in memory; `flush` hands them to the store."""

    def __init__(self, store: Store, clock: Callable[[], str]) -> None:
        self._store = store
        self._clock = clock
        self._pending: dict[str, _Counts] = {}
        self._stopping = asyncio.Event()

    def note(self, key_id: str, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        counts = self._pending.get(key_id)
        if counts is None:
            counts = self._pending[key_id] = _Counts()
        counts.requests += 1
        counts.prompt_tokens += prompt_tokens or 0
        counts.completion_tokens += completion_tokens or 0
        counts.last_used_at = self._clock()

    async def flush(self) -> None:
        """Add what was counted since the last flush to the store (kept on failure)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        rows = [
            KeyActivity(
                key_id=key_id,
                requests=c.requests,
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                last_used_at=c.last_used_at,
            )
            for key_id, c in pending.items()
        ]
        try:
            await self._store.add_key_activity(rows)
        except Exception:
            for row in rows:  # try again next time rather than lose the counts
                self.note_many(row)
            raise

    def note_many(self, row: KeyActivity) -> None:
        counts = self._pending.get(row.key_id)
        if counts is None:
            counts = self._pending[row.key_id] = _Counts()
        counts.requests += row.requests
        counts.prompt_tokens += row.prompt_tokens
        counts.completion_tokens += row.completion_tokens
        counts.last_used_at = max(counts.last_used_at, row.last_used_at or "")

    def stop(self) -> None:
        """Ask `run` to flush once more and return (the graceful way to end it)."""
        self._stopping.set()

    async def run(self, interval: float) -> None:
        """Flush every `interval` seconds until `stop` (then once more and return).

        Stopping by an event rather than by cancelling: a cancel arriving while a
        flush awaits the store would leave it unknown whether those counts were
        written, so they could be neither kept nor dropped exactly."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            try:
                await self.flush()
            except Exception as exc:
                if self._stopping.is_set():
                    _log.warning("could not record the last key activity: %s", exc)
                    return
                _log.warning("could not record key activity (retried): %s", exc)
