"""`gateway serve`'s log handler writes INFO lines in batches from a writer thread, a
WARNING at once with every line before it, and whatever waits on flush and close;
other handlers still see every record as it is logged."""

from __future__ import annotations

import io
import logging
import threading

from proxy.log_lines import BatchedStreamHandler


class _Stream(io.StringIO):
    """Counts the writes, and says when one happened."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = threading.Event()

    def write(self, text: str) -> int:
        self.writes += 1
        count = super().write(text)
        self.written.set()
        return count


def _logger(name: str, *handlers: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    return logger


def test_info_lines_wait_and_are_written_together_in_order() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)  # the writer never wakes in time
    logger = _logger("test.log_lines.batch", handler)
    try:
        for number in range(5):
            logger.info("line %d", number)
        assert stream.getvalue() == ""  # nothing written on the logging call itself
        handler.flush()
        assert stream.getvalue() == "".join(f"line {n}\n" for n in range(5))
        assert stream.writes == 1
    finally:
        logger.removeHandler(handler)


def test_the_writer_thread_writes_waiting_lines_after_the_delay() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=0.01)
    logger = _logger("test.log_lines.writer", handler)
    try:
        logger.info("first")
        logger.info("second")
        assert stream.written.wait(timeout=10.0)
        handler.acquire()  # the writer writes under the handler's lock
        handler.release()
        assert stream.getvalue() == "first\nsecond\n"
    finally:
        logger.removeHandler(handler)


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    logger = _logger("test.log_lines.warning", handler)
    try:
        logger.info("before")
        logger.warning("problem")
        assert stream.getvalue() == "before\nproblem\n"
        assert stream.writes == 1
    finally:
        logger.removeHandler(handler)


def test_close_writes_what_waits() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    logger = _logger("test.log_lines.close", handler)
    logger.info("last words")
    logger.removeHandler(handler)
    handler.close()
    assert stream.getvalue() == "last words\n"


def test_other_handlers_see_each_record_as_it_is_logged() -> None:
    seen: list[str] = []

    class Feed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    feed = Feed()
    logger = _logger("test.log_lines.feed", handler, feed)
    try:
        logger.info("decision")
        assert seen == ["decision"]
        assert stream.getvalue() == ""
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(feed)
