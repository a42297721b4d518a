"""`gateway serve`'s log handler writes the INFO lines logged on an event loop in
batches on a timer of that loop, a WARNING (or a line logged where no loop runs) at
once with every line before it, and whatever waits on flush and close; other
handlers still see every record as it is logged."""

from __future__ import annotations

import asyncio
import io
import logging

from proxy.log_lines import BatchedStreamHandler


class _Stream(io.StringIO):
    """Counts the writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _logger(name: str, *handlers: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in handlers:
        logger.addHandler(handler)
    return logger


def test_info_lines_wait_and_are_written_together_in_order() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)  # the timer never fires in time
    logger = _logger("test.log_lines.batch", handler)

    async def log() -> None:
        for number in range(5):
            logger.info("line %d", number)

    try:
        asyncio.run(log())
        assert stream.getvalue() == ""  # nothing written on the logging call itself
        handler.flush()
        assert stream.getvalue() == "".join(f"line {n}\n" for n in range(5))
        assert stream.writes == 1
    finally:
        logger.removeHandler(handler)


def test_the_loops_timer_writes_waiting_lines_after_the_delay() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=0.01)
    logger = _logger("test.log_lines.timer", handler)

    async def log() -> str:
        logger.info("first")
        logger.info("second")
        before = stream.getvalue()
        await asyncio.sleep(0.05)
        return before

    try:
        assert asyncio.run(log()) == ""
        assert stream.getvalue() == "first\nsecond\n"
        assert stream.writes == 1
    finally:
        logger.removeHandler(handler)


def test_a_line_logged_without_an_event_loop_is_written_at_once() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    logger = _logger("test.log_lines.no_loop", handler)
    try:
        logger.info("starting")
        assert stream.getvalue() == "starting\n"
    finally:
        logger.removeHandler(handler)


def test_lines_left_by_a_closed_loop_are_written_with_the_next_line() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    logger = _logger("test.log_lines.closed_loop", handler)

    async def log(line: str) -> None:
        logger.info(line)

    try:
        asyncio.run(log("first"))
        asyncio.run(log("second"))  # the first loop, and its timer, are gone
        assert stream.getvalue() == "first\nsecond\n"
    finally:
        logger.removeHandler(handler)


def test_a_warning_is_written_at_once_after_the_lines_before_it() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    logger = _logger("test.log_lines.warning", handler)

    async def log() -> None:
        logger.info("before")
        logger.warning("problem")

    try:
        asyncio.run(log())
        assert stream.getvalue() == "before\nproblem\n"
        assert stream.writes == 1
    finally:
        logger.removeHandler(handler)


def test_close_writes_what_waits() -> None:
    stream = _Stream()
    handler = BatchedStreamHandler(stream, delay=3600.0)
    logger = _logger("test.log_lines.close", handler)

    async def log() -> None:
        logger.info("last words")

    asyncio.run(log())
    assert stream.getvalue() == ""
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

    async def log() -> None:
        logger.info("decision")

    try:
        asyncio.run(log())
        assert seen == ["decision"]
        assert stream.getvalue() == ""
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(feed)
