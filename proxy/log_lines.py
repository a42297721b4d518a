"""The log's stream handler for `gateway serve`: lines written in batches.

`serve` logs one decision line per request (`proxy/decision_log.py`). A plain
`StreamHandler` writes and flushes each record on its own: a `write` system call per
request, made on the event loop while the handler's lock is held. Here a line logged
on a running event loop waits up to `delay` seconds (a timer on that loop) for the
lines after it, and they are written with one call; a WARNING or worse is written at
once, with every line before it, so problems show without delay and lines keep their
order, and so is a line logged where no event loop runs. `flush` (which
`logging.shutdown` calls at exit) and `close` write whatever waits. (A writer thread
instead of the timer cost more than it saved: waking it handed the GIL over.)

Only this handler batches: every other handler on the loggers (the dashboard's feed of
decision lines, a test's capture) still sees each record as it is logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

__all__ = ["BatchedStreamHandler"]

# Lines that make a batch be written before its timer (a bound on what waits).
_MOST_WAITING = 512


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """`logging.StreamHandler` whose INFO and DEBUG lines logged on an event loop reach
    the stream in batches, at most `delay` seconds later (see the module doc)."""

    def __init__(self, stream: TextIO, delay: float = 0.05) -> None:
        super().__init__(stream)
        self._delay = delay
        self._waiting: list[str] = []
        # The loop whose timer writes the waiting lines (None: nothing waits).
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called by `Handler.handle` with `self.lock` held.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        if record.levelno >= logging.WARNING or len(self._waiting) >= _MOST_WAITING:
            self._write_waiting()
        elif self._timer_loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop here: nothing would write it later
                self._write_waiting()
                return
            loop.call_later(self._delay, self.flush)
            self._timer_loop = loop
        elif self._timer_loop.is_closed():  # its timer will never run
            self._write_waiting()

    def flush(self) -> None:
        self.acquire()  # an RLock: `emit` may call this with it held
        try:
            self._write_waiting()
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_waiting(self) -> None:
        """Write the waiting lines in one call (with `self.lock` held)."""
        self._timer_loop = None
        if not self._waiting:
            return
        text = self.terminator.join(self._waiting) + self.terminator
        self._waiting.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # The stream is gone (a closed pipe): as a plain StreamHandler, the lines are
            # lost and logging goes on.
            pass
