"""One structured log line per request: who (key id, never the token), what, the
decision and why, how long the policy and the upstream took, and what it cost.

The dashboard's Activity page reads these lines (`proxy/dashboard/feed.py`): keep the
field names stable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal

import msgspec

__all__ = ["DecisionRecord"]

logger = logging.getLogger("gateway.decision")
_encoder = msgspec.json.Encoder()


class _Line(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    key_id: str | None
    client: str | None = None  # the client's address (see proxy.forwarded)
    operation: str
    model: str | None
    provider: str | None
    decision: str
    status: int
    reason: str | None = None
    # The decision's first reason code: `expired`, `token_rotated`, an IAM rule type...
    reason_code: str | None = None
    policy_ms: float | None = None
    upstream_ms: float | None = None
    total_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: str | None = None  # USD charged, a decimal string (never a float)


class DecisionRecord:
    """Collects the facts of one request as it goes; `emit` writes the line once."""

    def __init__(
        self, operation: str, on_emit: Callable[[DecisionRecord], None] | None = None
    ) -> None:
        self.started = time.perf_counter()
        self._on_emit = on_emit
        self.operation = operation
        self.key_id: str | None = None
        self.client: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.allowed = False
        self.reason: str | None = None
        self.reason_code: str | None = None
        self.policy_seconds: float | None = None
        self.upstream_seconds: float | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.cost: Decimal | None = None
        self._emitted = False

    def emit(self, status: int) -> None:
        if self._emitted:
            return
        self._emitted = True
        if self._on_emit is not None:
            self._on_emit(self)
        if not logger.isEnabledFor(logging.INFO):
            return
        line = _Line(
            key_id=self.key_id,
            client=self.client or None,
            operation=self.operation,
            model=self.model,
            provider=self.provider,
            decision="allow" if self.allowed else "deny",
            status=status,
            reason=self.reason,
            reason_code=self.reason_code,
            policy_ms=_ms(self.policy_seconds),
            upstream_ms=_ms(self.upstream_seconds),
            total_ms=round((time.perf_counter() - self.started) * 1000, 3),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=None if self.cost is None else str(self.cost),
        )
        logger.info(_encoder.encode(line).decode())


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
