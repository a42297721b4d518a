"""One Redis pipeline per event-loop turn for the request path's ledger scripts.

Each reservation and settlement is one Lua script call. Sent one by one, every call
pays redis-py's per-command machinery (a pool checkout, a write, a wait for its own
reply) and under load that, not Redis, was the largest part of the ledger's cost.
`ScriptBatcher` collects the calls made in one turn of the event loop and sends them
as one pipeline (not a MULTI transaction: each script is atomic on its own, and one
failing call must not undo the others). Every caller still gets its own result after
Redis has run its script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from proxy.store.common import log_failed_release

__all__ = ["ScriptBatcher", "Undo"]


Undo = Callable[[Any], tuple[str, tuple[Any, ...]] | None]
"""Given a call's result, the script call (name, args) that takes it back, if any."""


class _QueuedCall:
    __slots__ = ("args", "future", "name", "undo")

    def __init__(
        self, name: str, args: tuple[Any, ...], future: asyncio.Future[Any], undo: Undo | None
    ) -> None:
        self.name = name
        self.args = args
        self.future = future
        self.undo = undo


class ScriptBatcher:
    """Queues script calls and sends each turn's calls as one pipeline."""

    def __init__(self, redis: aioredis.Redis, scripts: dict[str, AsyncScript], prefix: str) -> None:
        self._redis = redis
        self._scripts = scripts
        self._prefix = prefix
        self._queued: list[_QueuedCall] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def call(self, name: str, *args: Any, undo: Undo | None = None) -> Any:
        """Run script `name` with `args` in this turn's pipeline and return its reply.

        `undo` runs, unawaited, when the caller stops waiting (is cancelled) after the
        script has run, so that what it created (a reservation) does not linger.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_QueuedCall(name, args, future, undo))
        return await future

    def _queue(self, call: _QueuedCall) -> None:
        self._queued.append(call)
        if len(self._queued) == 1:
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        batch = [call for call in self._queued if not call.future.cancelled()]
        self._queued = []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _run(self, batch: list[_QueuedCall]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in batch:
                    pipe.evalsha(self._scripts[call.name].sha, 0, self._prefix, *call.args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: no reply is known for any call
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                # Redis lost its script cache (a restart): load it and run this call alone.
                # A NOSCRIPT reply means the script did not run, so running it is safe.
                try:
                    reply = await self._scripts[call.name](args=[self._prefix, *call.args])
                except Exception as exc:
                    reply = exc
            self._deliver(call, reply)

    def _deliver(self, call: _QueuedCall, reply: Any) -> None:
        if not call.future.done():
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)
            return
        if call.undo is None or isinstance(reply, Exception):
            return
        taken_back = call.undo(reply)
        if taken_back is not None:
            name, args = taken_back
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.add_done_callback(log_failed_release)
            self._queue(_QueuedCall(name, args, future, None))

    async def aclose(self) -> None:
        """Send what is queued and wait for every pipeline in flight."""
        if self._queued:
            self._send()
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))
