"""Feeds an `InMemoryDecisionLog` from the proxy's structured decision log lines.

The proxy writes one JSON line per request to the `gateway.decision` logger
(`proxy/decision_log.py`): key id (never the token), operation, model, provider,
status, reason, and `cost` (a decimal string) when it reports one. Listening to
those lines keeps the Activity section in step with what the proxy logs, with no
second code path on the request path. With `log_level` above `info` the proxy
writes no decision lines, and Activity stays empty.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from proxy.dashboard.decision_log import InMemoryDecisionLog, LoggedDecision
from proxy.decision_log import DecisionLine, decision_line

__all__ = [
    "DECISION_LOGGER",
    "DecisionLineFeed",
    "decision_from_fields",
    "decision_from_line",
    "feeding_decision_log",
]

DECISION_LOGGER = "gateway.decision"
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class DecisionLineFeed(logging.Handler):
    """A logging handler that turns each decision line into a `LoggedDecision`."""

    def __init__(self, log: InMemoryDecisionLog) -> None:
        super().__init__(level=logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        # The proxy's own records carry the line's fields: no need to parse its text.
        line = decision_line(record)
        if line is None:
            entry = decision_from_line(record.getMessage(), record.created)
        else:
            entry = decision_from_fields(line, record.created)
        if entry is not None:
            self._log.record(entry)


def decision_from_fields(line: DecisionLine, created: float) -> LoggedDecision | None:
    """`decision_from_line` of the line's text, from its fields (the same entry)."""
    if line.key_id is None:
        return None
    return LoggedDecision(
        time=datetime.fromtimestamp(created, UTC),
        key_id=line.key_id,
        operation=line.operation,
        model=line.model,
        provider=line.provider if line.decision == "allow" else None,
        status=line.status,
        cost=_money(line.cost),
        message=line.reason or "",
    )


def decision_from_line(line: str, created: float) -> LoggedDecision | None:
    """The entry a decision line describes; None for lines without a key or not JSON."""
    try:
        fields = _decode(line)
    except msgspec.DecodeError:
        return None
    key_id, status = fields.get("key_id"), fields.get("status")
    if not isinstance(key_id, str) or not isinstance(status, int):
        return None
    return LoggedDecision(
        time=datetime.fromtimestamp(created, UTC),
        key_id=key_id,
        operation=str(fields.get("operation", "")),
        model=_text(fields.get("model")),
        provider=_text(fields.get("provider")) if fields.get("decision") == "allow" else None,
        status=status,
        cost=_money(fields.get("cost")),
        message=_text(fields.get("reason")) or "",
    )


@contextlib.asynccontextmanager
async def feeding_decision_log(log: InMemoryDecisionLog) -> AsyncIterator[None]:
    """Listen to the decision lines for as long as the app runs (a Litestar lifespan)."""
    feed = DecisionLineFeed(log)
    logger = logging.getLogger(DECISION_LOGGER)
    logger.addHandler(feed)
    try:
        yield
    finally:
        logger.removeHandler(feed)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _money(value: object) -> Decimal | None:
    # Why str(): a cost must never pass through a float.
    if isinstance(value, str | int):
        with contextlib.suppress(InvalidOperation):
            return Decimal(str(value))
    return None
