"""The decision line's log record (`proxy.decision_log`): built without `Logger.info`,
it carries the fields and values `Logger.info` would give it (but the caller's line
number), reaches the handlers of the logger and of its ancestors, and a custom record
factory still makes it. The dashboard's feed reads its fields instead of parsing its
text, and gets the same entry."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from decimal import Decimal

import pytest

from proxy.dashboard.decision_log import InMemoryDecisionLog
from proxy.dashboard.feed import DecisionLineFeed, decision_from_fields, decision_from_line
from proxy.decision_log import DecisionRecord, decision_line

_DECISION_LOGGER = "gateway.decision"
# Fields that differ by construction: when it was made, and the caller's location.
_MOMENT = {"created", "msecs", "relativeCreated"}
# Set by formatting, which some handler (pytest's capture) may already have done.
_FORMATTED = {"message", "asctime"}
_CALLER = {"pathname", "filename", "module", "lineno", "funcName"}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[tuple[_Capture, _Capture]]:
    """A handler on the decision logger and one on its parent, at INFO."""
    own, parent = _Capture(), _Capture()
    decision = logging.getLogger(_DECISION_LOGGER)
    gateway = logging.getLogger("gateway")
    levels = decision.level, gateway.level
    decision.setLevel(logging.INFO)
    decision.addHandler(own)
    gateway.addHandler(parent)
    try:
        yield own, parent
    finally:
        decision.removeHandler(own)
        gateway.removeHandler(parent)
        decision.setLevel(levels[0])


def _emit(status: int = 200) -> None:
    record = DecisionRecord("chat.completions")
    record.key_id, record.model, record.provider = "key-1", "gpt-4o", "openai"
    record.allowed, record.cost = True, Decimal("0.000123")
    record.emit(status)


def _same_as_logger_info(own: _Capture, *, caller: bool) -> None:
    """The decision line `own` captured last against `Logger.info` of its message."""
    line = own.records[-1]
    logging.getLogger(_DECISION_LOGGER).info(line.msg)
    made = own.records[-1]
    assert made is not line
    assert set(vars(line)) - _FORMATTED == set(vars(made)) - _FORMATTED
    differ = _MOMENT | _FORMATTED | (_CALLER if caller else set())
    for field in set(vars(made)) - differ:
        assert getattr(line, field) == getattr(made, field), field
    assert 0 <= made.created - line.created < 60
    assert line.msecs == int((line.created - int(line.created)) * 1000)
    assert line.getMessage() == made.getMessage()


def test_the_line_reaches_the_loggers_handlers_and_its_ancestors(
    captured: tuple[_Capture, _Capture], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `logging`'s own value (callers looked up), whatever another test configured.
    monkeypatch.setattr(logging, "_srcfile", os.path.normcase(logging.__file__))
    own, parent = captured
    _emit()
    assert len(own.records) == 1
    assert parent.records == own.records
    line = own.records[0]
    assert isinstance(line, logging.LogRecord)
    assert '"key_id":"key-1"' in line.getMessage()
    assert '"cost":"0.000123"' in line.getMessage()
    _same_as_logger_info(own, caller=True)
    assert line.filename == "decision_log.py"
    assert line.funcName == "emit"


def test_without_caller_lookup_the_line_names_no_caller(
    captured: tuple[_Capture, _Capture], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `gateway serve` configures logging: no callers, threads or processes."""
    monkeypatch.setattr(logging, "_srcfile", None)
    monkeypatch.setattr(logging, "logThreads", False)
    monkeypatch.setattr(logging, "logProcesses", False)
    monkeypatch.setattr(logging, "logMultiprocessing", False)
    own, _ = captured
    _emit()
    line = own.records[0]
    _same_as_logger_info(own, caller=False)
    assert (line.pathname, line.lineno, line.funcName) == (
        "(unknown file)",
        0,
        "(unknown function)",
    )
    assert line.thread is None and line.process is None and line.processName is None


def test_a_custom_record_factory_still_makes_the_line(
    captured: tuple[_Capture, _Capture],
) -> None:
    own, _ = captured
    default = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = default(*args, **kwargs)
        record.trace_id = "t-1"
        return record

    logging.setLogRecordFactory(factory)
    try:
        _emit()
    finally:
        logging.setLogRecordFactory(default)
    assert getattr(own.records[0], "trace_id", None) == "t-1"


def test_a_disabled_level_logs_nothing(captured: tuple[_Capture, _Capture]) -> None:
    own, _ = captured
    logging.getLogger(_DECISION_LOGGER).setLevel(logging.WARNING)
    _emit()
    assert own.records == []


def _record(
    *, key_id: str | None, allowed: bool, cost: str | None, reason: str | None
) -> DecisionRecord:
    record = DecisionRecord("chat.completions")
    record.key_id, record.model, record.provider = key_id, "gpt-4o", "openai"
    record.allowed, record.reason = allowed, reason
    record.cost = None if cost is None else Decimal(cost)
    return record


@pytest.mark.parametrize(
    ("key_id", "allowed", "cost", "reason", "status"),
    [
        ("key-1", True, "0.000123", None, 200),
        ("key-1", True, "1E+3", None, 200),
        ("key-1", False, None, "Unauthorized: LLMGateway API key reached its usage limit.", 401),
        ("key-2", True, None, "upstream status 503", 503),
        (None, False, None, "Unauthorized: no key", 401),
    ],
)
def test_the_dashboards_feed_reads_the_fields_as_it_would_the_text(
    captured: tuple[_Capture, _Capture],
    key_id: str | None,
    allowed: bool,
    cost: str | None,
    reason: str | None,
    status: int,
) -> None:
    own, _ = captured
    _record(key_id=key_id, allowed=allowed, cost=cost, reason=reason).emit(status)
    line = own.records[0]
    fields = decision_line(line)
    assert fields is not None
    from_text = decision_from_line(line.getMessage(), line.created)
    assert decision_from_fields(fields, line.created) == from_text
    log = InMemoryDecisionLog()
    DecisionLineFeed(log).handle(line)
    recent = asyncio.run(log.recent(key_id, 10)) if key_id is not None else []
    assert recent == ([] if from_text is None else [from_text])


def test_a_record_made_elsewhere_is_read_from_its_text(
    captured: tuple[_Capture, _Capture],
) -> None:
    own, _ = captured
    _emit()
    copied = logging.makeLogRecord(dict(vars(own.records[0])))  # e.g. across a queue
    assert decision_line(copied) is None
    log = InMemoryDecisionLog()
    DecisionLineFeed(log).handle(copied)
    assert asyncio.run(log.recent("key-1", 10)) == [
        decision_from_line(copied.getMessage(), copied.created)
    ]
