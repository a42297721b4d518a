"""The per-request decision log the dashboard's Activity section reads.

The proxy writes one `LoggedDecision` per request (never the token, only the key
id); the dashboard only reads through `DecisionLogReader`. `InMemoryDecisionLog`
is the shipped implementation: bounded per key, so a busy key cannot grow memory
without limit, and it forgets everything on restart (the key's settled usage in
the store is the durable figure; this log is for looking at recent traffic).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import msgspec

__all__ = ["DailyUsage", "DecisionLogReader", "InMemoryDecisionLog", "LoggedDecision"]


class LoggedDecision(msgspec.Struct, frozen=True, kw_only=True):
    """One request as the gateway answered it."""

    time: datetime
    """When the request arrived (timezone-aware, UTC)."""
    key_id: str
    """The key that made the request; never the token."""
    operation: str
    """`chat.completions`, `completions`, `embeddings` or `models.list`."""
    model: str | None
    """The model asked for, as the client wrote it."""
    provider: str | None
    """The provider the decision chose; None on a denial."""
    status: int
    """The HTTP status the client received."""
    cost: Decimal | None = None
    """USD charged to the key for this request; None when the log line did not say."""
    message: str = ""
    """The documented message on a denial, empty when allowed."""


class DailyUsage(msgspec.Struct, frozen=True, kw_only=True):
    day: date
    cost: Decimal


class DecisionLogReader(Protocol):
    """What the dashboard needs from a decision log."""

    async def recent(self, key_id: str, limit: int) -> list[LoggedDecision]:
        """The newest `limit` records of the key, newest first."""
        ...

    async def daily_usage(self, key_id: str, days: int) -> list[DailyUsage]:
        """USD spent per UTC day over the last `days` days (today included),
        oldest first, one entry per day (zero when there was no traffic)."""
        ...


class InMemoryDecisionLog:
    """A `DecisionLogReader` the proxy feeds with `record()` after each request."""

    def __init__(self, per_key_limit: int = 1000) -> None:
        # Why bounded: the log lives in the proxy process for as long as it runs.
        self._per_key_limit = per_key_limit
        self._by_key: dict[str, deque[LoggedDecision]] = {}

    def record(self, entry: LoggedDecision) -> None:
        """Append one request; cheap and non-blocking, safe to call on the request path."""
        entries = self._by_key.get(entry.key_id)
        if entries is None:
            entries = deque(maxlen=self._per_key_limit)
            self._by_key[entry.key_id] = entries
        entries.append(entry)

    async def recent(self, key_id: str, limit: int) -> list[LoggedDecision]:
        entries = self._by_key.get(key_id, ())
        newest_first = sorted(entries, key=lambda e: e.time, reverse=True)
        return newest_first[: max(limit, 0)]

    async def daily_usage(
        self, key_id: str, days: int, today: date | None = None
    ) -> list[DailyUsage]:
        last_day = today or datetime.now(UTC).date()
        first_day = last_day - timedelta(days=max(days, 1) - 1)
        totals = {first_day + timedelta(days=n): Decimal(0) for n in range(max(days, 1))}
        for entry in self._by_key.get(key_id, ()):
            day = entry.time.astimezone(UTC).date()
            if day in totals and entry.cost is not None:
                totals[day] += entry.cost
        return [DailyUsage(day=day, cost=cost) for day, cost in sorted(totals.items())]
