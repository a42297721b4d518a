"""The log's stream handler for `gateway serve`: lines written in batches, off the event loop.

`serve` logs one decision line per request (`proxy/decision_log.py`). A plain
`StreamHandler` writes and flushes each record on its own: a `write` system call per
request, made on the event loop while the handler's lock is held. Here an INFO line
waits up to `delay` seconds for the lines after it and a writer thread writes them all
with one call; a WARNING or worse is written at once, with every line before it, so
problems show without delay and lines keep their order. `flush` (which
`logging.shutdown` calls at exit) and `close` write whatever waits.

Only this handler batches: every other handler on the loggers (the dashboard's feed of
decision lines, a test's capture) still sees each record as it is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

__all__ = ["BatchedStreamHandler"]


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """`logging.StreamHandler` whose INFO and DEBUG lines reach the stream in batches,
    at most `delay` seconds after they were logged (see the module doc)."""

    def __init__(self, stream: TextIO, delay: float = 0.05) -> None:
        super().__init__(stream)
        self._delay = delay
        self._waiting: list[str] = []
        self._due = threading.Event()
        self._writer: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called by `Handler.handle` with `self.lock` held.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        if record.levelno >= logging.WARNING:
            self._write_waiting()
        elif len(self._waiting) == 1:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_when_due, name="log-writer", daemon=True
                )
                self._writer.start()
            self._due.set()

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

    def _write_when_due(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self._delay)  # let the lines of the next `delay` seconds join
            self.acquire()
            try:
                self._due.clear()
                self._write_waiting()
            finally:
                self.release()
