"""One structured log line per request: who (key id, never the token), what, the
decision and why, how long the policy and the upstream took, and what it cost.

The dashboard's Activity page reads these lines (`proxy/dashboard/feed.py`): keep the
field names stable.

A line is logged with `Logger.handle` on a record built here (`_LineRecord`), not with
`Logger.info`: every handler of the logger and its ancestors still gets it, with the
same fields, but without `Logger._log`'s caller lookup, and `LogRecord.__init__`'s path
parsing and argument checks, none of which a decision line uses (a quarter of the
line's cost). The one difference: the caller's line number is 0 (its file and function
are named, as `Logger.findCaller` would, unless `logging` looks up no callers). A
custom record factory (`logging.setLogRecordFactory`, e.g. one adding trace ids) is
honoured: the line then goes through `Logger.info` as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec

__all__ = ["DecisionLine", "DecisionRecord", "decision_line"]

logger = logging.getLogger("gateway.decision")
_encoder = msgspec.json.Encoder()
# Where a line is logged from, as `Logger.findCaller` would name it.
_FILENAME = Path(__file__).name
_MODULE = Path(__file__).stem
# `logging`'s start, the origin of `LogRecord.relativeCreated` (logging's own, not public).
_LOGGING_START: float = getattr(logging, "_startTime", time.time())


class _LineRecord(logging.LogRecord):
    """The `LogRecord` `Logger.info(message)` would make for a decision line (same
    fields and values but the line number), without the general constructor's work
    (see the module doc)."""

    # The line the message encodes, for handlers that want its fields rather than its
    # text (the dashboard's feed); a slot, so the record's fields stay `Logger.info`'s.
    __slots__ = ("line",)

    def __init__(self, message: str, line: DecisionLine) -> None:  # no super().__init__
        self.line = line
        created = time.time()
        self.name = logger.name
        self.msg = message
        self.args = ()
        self.levelname = logging.getLevelName(logging.INFO)
        self.levelno = logging.INFO
        if getattr(logging, "_srcfile", None):
            self.pathname, self.filename, self.module = __file__, _FILENAME, _MODULE
            self.funcName = "emit"
        else:  # callers are not looked up (`gateway serve`): what `Logger._log` gives then
            self.pathname = self.filename = self.module = "(unknown file)"
            self.funcName = "(unknown function)"
        self.exc_info = None
        self.exc_text = None
        self.stack_info = None
        self.lineno = 0
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = (created - _LOGGING_START) * 1000
        if logging.logThreads:
            self.thread: int | None = threading.get_ident()
            self.threadName: str | None = threading.current_thread().name
        else:
            self.thread = self.threadName = None
        self.processName: str | None = None
        if logging.logMultiprocessing:
            self.processName = "MainProcess"
            multiprocessing = sys.modules.get("multiprocessing")
            if multiprocessing is not None:
                with contextlib.suppress(Exception):
                    self.processName = multiprocessing.current_process().name
        self.process: int | None = os.getpid() if logging.logProcesses else None
        if sys.version_info >= (3, 12):  # pragma: no cover - the records' asyncio task
            task = None
            if getattr(logging, "logAsyncioTasks", True):
                with contextlib.suppress(Exception):
                    current = asyncio.current_task()
                    task = None if current is None else current.get_name()
            self.taskName = task


class DecisionLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The fields of one decision line (its JSON text is this struct encoded)."""

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
    """Collects the facts of one request as it goes; `emit` writes the line once.

    The facts a request has not set yet are read from the class's defaults: an instance
    starts with four attributes instead of sixteen (one a request, issue 15)."""

    key_id: str | None = None
    client: str | None = None
    model: str | None = None
    provider: str | None = None
    allowed = False
    reason: str | None = None
    reason_code: str | None = None
    policy_seconds: float | None = None
    upstream_seconds: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: Decimal | None = None
    _emitted = False

    def __init__(
        self, operation: str, on_emit: Callable[[DecisionRecord], None] | None = None
    ) -> None:
        self.started = time.perf_counter()
        self._on_emit = on_emit
        self.operation = operation

    def emit(self, status: int) -> None:
        if self._emitted:
            return
        self._emitted = True
        if self._on_emit is not None:
            self._on_emit(self)
        if not logger.isEnabledFor(logging.INFO):
            return
        policy, upstream = self.policy_seconds, self.upstream_seconds
        line = DecisionLine(
            key_id=self.key_id,
            client=self.client or None,
            operation=self.operation,
            model=self.model,
            provider=self.provider,
            decision="allow" if self.allowed else "deny",
            status=status,
            reason=self.reason,
            reason_code=self.reason_code,
            policy_ms=None if policy is None else round(policy * 1000, 3),
            upstream_ms=None if upstream is None else round(upstream * 1000, 3),
            total_ms=round((time.perf_counter() - self.started) * 1000, 3),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=None if self.cost is None else str(self.cost),
        )
        message = _encoder.encode(line).decode()
        if logging.getLogRecordFactory() is logging.LogRecord:
            logger.handle(_LineRecord(message, line))
        else:
            logger.info(message)


def decision_line(record: logging.LogRecord) -> DecisionLine | None:
    """The fields of a decision line's record as logged here; None for any other record
    (a line made by a custom record factory, or re-created from its text elsewhere:
    read its message then)."""
    return record.line if isinstance(record, _LineRecord) else None
