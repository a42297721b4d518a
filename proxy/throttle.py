"""Failed admin-token attempts per client address: guessing the token is slowed down.

The dashboard's sign-in form and the admin API both accept the admin token. Each
wrong try is recorded against the client's address; after `limit` failures within
`window_s` seconds that address is refused (HTTP 429, with `Retry-After`) without
checking anything until its oldest failure in the window has aged out. A correct
token clears the address's record. Memory is bounded: at most `max_clients`
addresses are tracked, the least recently failed one is forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["FailedAttempts"]


class FailedAttempts:
    """Recent failures per client address (one instance per guarded door)."""

    def __init__(
        self,
        limit: int = 10,
        window_s: float = 300.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0 or max_clients < 1:
            raise ValueError("FailedAttempts needs limit >= 1, window_s > 0, max_clients >= 1")
        self._limit = limit
        self._window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try again, or None when it may try now."""
        failures = self._recent(client)
        if failures is None or len(failures) < self._limit:
            return None
        return max(1, math.ceil(failures[0] + self._window_s - self._clock()))

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        if failures is None:
            failures = self._failures[client] = deque(maxlen=self._limit)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
        failures.append(self._clock())
        self._failures.move_to_end(client)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self._clock() - self._window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
