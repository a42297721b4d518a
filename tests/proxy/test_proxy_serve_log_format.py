"""`gateway serve`'s log formatter (`proxy.cli`) writes exactly what
`logging.Formatter(LINE_FORMAT)` writes, for every kind of record: its shortcuts (the
date cached per second, the line put together directly) change the cost, not the text,
nor the `message` and `asctime` it leaves on the record."""

from __future__ import annotations

import logging
import sys

import pytest

from proxy.cli import LINE_FORMAT, _SecondCachedFormatter
from proxy.decision_log import DecisionRecord

_STANDARD = logging.Formatter(LINE_FORMAT)


def _record(msg: object, args: tuple[object, ...] = (), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, msg, args, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def _failure() -> tuple[type[BaseException], BaseException, object]:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    assert info[0] is not None and info[1] is not None
    return info[0], info[1], info[2]


def _pair(make: object) -> tuple[logging.LogRecord, logging.LogRecord]:
    assert callable(make)
    ours, theirs = make(), make()
    theirs.created, theirs.msecs = ours.created, ours.msecs
    return ours, theirs


@pytest.mark.parametrize(
    "make",
    [
        lambda: _record("plain text"),
        lambda: _record("%s of %d", ("one", 2)),
        lambda: _record({"not": "a string"}),
        lambda: _record("with a trailing newline\n"),
        lambda: _record("failed", exc_info=_failure()),
        lambda: _record("failed before", exc_text="Traceback (most recent call last): ..."),
        lambda: _record("where", stack_info="Stack (most recent call last): ..."),
        lambda: _record("odd parts", levelname=7, name=("a", "tuple")),
    ],
    ids=["plain", "args", "not-a-string", "newline", "exc-info", "exc-text", "stack", "odd"],
)
def test_each_record_is_formatted_as_the_standard_formatter_does(make: object) -> None:
    ours, theirs = _pair(make)
    assert _SecondCachedFormatter().format(ours) == _STANDARD.format(theirs)
    assert ours.message == theirs.message
    assert ours.asctime == theirs.asctime  # type: ignore[attr-defined]


def test_the_cached_date_follows_the_records_second() -> None:
    formatter = _SecondCachedFormatter()
    for created in (1_800_000_000.25, 1_800_000_000.999, 1_800_000_001.0, 1_799_999_999.5):
        ours, theirs = _record("tick"), _record("tick")
        for record in (ours, theirs):
            record.created = created
            record.msecs = (created - int(created)) * 1000
        assert formatter.format(ours) == _STANDARD.format(theirs)


def test_a_decision_line_is_formatted_as_the_standard_formatter_does() -> None:
    captured: list[logging.LogRecord] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    decision = logging.getLogger("gateway.decision")
    handler, level = _Capture(level=logging.INFO), decision.level
    decision.addHandler(handler)
    decision.setLevel(logging.INFO)
    try:
        record = DecisionRecord("chat.completions")
        record.key_id, record.allowed = "key-1", True
        record.emit(200)
    finally:
        decision.removeHandler(handler)
        decision.setLevel(level)
    (line,) = captured
    text = _SecondCachedFormatter().format(line)
    assert text == _STANDARD.format(line)
    assert text.split(" ", 2)[2].startswith('INFO gateway.decision {"key_id":"key-1",')
