"""One Redis pipeline per event-loop turn for the request path's ledger scripts.

Each reservation and settlement is one Lua script call. Sent one by one, every call
pays a client's per-command machinery (a write, a wait for its own reply) and under
load that, not Redis, was the largest part of the ledger's cost. `ScriptBatcher`
collects the calls made in one turn of the event loop and sends them as one pipeline
(not a MULTI transaction: each script is atomic on its own, and one failing call must
not undo the others). Every caller still gets its own result after Redis has run its
script.

A call made while the connection waits for no reply and nothing is queued is written
at once instead: with one request at a time there is nothing to batch it with, and the
turn's wait was pure latency (two loop turns per request, one before the admission and
one before the settlement). Under load replies are outstanding, so calls still go in
one write per turn. `write_now` writes a call only in that case and hands its reply
to a plain callback (the ledger's settlement at one request at a time: nobody awaits
it, so it needs no future, whose done callbacks would cost the loop a turn of their
own when the reply comes).

The futures of awaited calls are made on the loop of the connection they go out on
(`RespConnection.loop`): Python 3.11 asks the OS for its pid on every look-up of the
running loop, a system call per call.

For a plain `redis://` or `unix://` URL the pipeline goes over one connection of its
own (`proxy.store.resp`): written with one call, its replies read in order, with none
of redis-py's pool, pipeline object or Python reply parser in between, and every call
applied by Redis in the order it was made. Any other URL (TLS, connection options)
goes through a redis-py pipeline.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from proxy.store.common import log_failed_release
from proxy.store.resp import Endpoint, Reply, RespConnection, encode_command

__all__ = ["ScriptBatcher", "Undo"]


Undo = Callable[[Any], tuple[str, tuple[Any, ...]] | None]
"""Given a call's result, the script call (name, args) that takes it back, if any."""


class _Outcome(Protocol):
    """Where a call's reply goes: an `asyncio.Future`, or `_Callback`."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class _Callback(msgspec.Struct, frozen=True):
    """A call's outcome handed to a plain function (the reply or the exception), for a
    call nobody awaits: no future, no done callbacks scheduled on the loop."""

    reply: Reply

    def done(self) -> bool:
        return False  # each call's reply is delivered once

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: Any, /) -> None:
        self.reply(result)

    def set_exception(self, exception: BaseException, /) -> None:
        self.reply(exception)


class _QueuedCall(msgspec.Struct, frozen=True):
    """One script call and where its reply goes (a frozen Struct: made in C, where a
    class's `__init__` ran Python for every call)."""

    name: str
    args: tuple[str | int, ...]
    future: _Outcome
    undo: Undo | None


def _bulk(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _arguments(args: tuple[str | int, ...]) -> bytes:
    """The script's arguments as RESP bulk strings: formatted as one text and encoded
    once (half the time of encoding each), with byte lengths for non-ASCII text."""
    parts = []
    for arg in args:
        text = arg if type(arg) is str else str(arg)
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        parts.append(f"${size}\r\n{text}\r\n")
    return "".join(parts).encode("utf-8")


class ScriptBatcher:
    """Queues script calls and sends each turn's calls as one pipeline."""

    def __init__(
        self,
        redis: aioredis.Redis,
        scripts: dict[str, AsyncScript],
        prefix: str,
        endpoint: Endpoint | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._prefix = prefix
        self._queued: list[_QueuedCall] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._endpoint = endpoint
        self._connection: RespConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._unsent: list[_QueuedCall] = []  # waiting for the connection to open
        # EVALSHA <sha> 0 <prefix>: the same four arguments open every call of a script.
        head = _bulk(prefix)
        self._heads = {
            name: _bulk("EVALSHA") + _bulk(script.sha) + _bulk("0") + head
            for name, script in scripts.items()
        }

    async def call(self, name: str, *args: str | int, undo: Undo | None = None) -> Any:
        """Run script `name` with `args` in this turn's pipeline and return its reply.

        `undo` runs, unawaited, when the caller stops waiting (is cancelled) after the
        script has run, so that what it created (a reservation) does not linger.
        """
        connection = self._connection
        loop = asyncio.get_running_loop() if connection is None else connection.loop
        future: asyncio.Future[Any] = loop.create_future()
        self._queue(_QueuedCall(name, args, future, undo), loop)
        return await future

    def write_now(self, name: str, reply: Reply, *args: str | int) -> bool:
        """Write a call of script `name` at once if the connection waits for no reply
        and nothing is queued (one request at a time), without waiting for it: `reply`
        gets its reply (or the exception), and Redis applies the call before anything
        this process writes later. False, and nothing is sent: use `call`."""
        connection = self._connection
        if self._queued or self._unsent or connection is None or not connection.idle:
            return False
        self._write(connection, [_QueuedCall(name, args, _Callback(reply), None)])
        return True

    def _queue(self, call: _QueuedCall, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Queue `call` for this turn's write, or write it at once on an idle connection."""
        if not self._queued:
            connection = self._connection
            if connection is not None and connection.idle and not self._unsent:
                # Nothing else is waiting for Redis (one request at a time): a turn's
                # wait would batch nothing and only delay this call. Written now, after
                # everything written before it, so Redis still applies calls in order.
                self._write(connection, [call])
                return
        self._queued.append(call)
        if len(self._queued) == 1:
            (loop or asyncio.get_running_loop()).call_soon(self._send)

    def _send(self) -> None:
        batch = [call for call in self._queued if not call.future.cancelled()]
        self._queued = []
        if batch:
            self._dispatch(batch)

    def _dispatch(self, batch: list[_QueuedCall]) -> None:
        """Send one turn's calls: written at once when the connection is open."""
        if self._endpoint is None:
            self._spawn(self._run(batch))
            return
        connection = self._connection
        if connection is not None and connection.usable:
            self._write(connection, batch)
            return
        self._unsent += batch
        if self._connecting is None:
            self._connecting = self._spawn(self._connect())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    def _write(self, connection: RespConnection, batch: list[_QueuedCall]) -> None:
        heads = self._heads
        if len(batch) == 1:  # one request at a time: no comprehension (a function each)
            call = batch[0]
            command = b"*%d\r\n%s%s" % (len(call.args) + 4, heads[call.name], _arguments(call.args))
            connection.send((command,), (functools.partial(self._on_reply, call),))
            return
        commands = [
            b"*%d\r\n%s%s" % (len(call.args) + 4, heads[call.name], _arguments(call.args))
            for call in batch
        ]
        connection.send(commands, [functools.partial(self._on_reply, call) for call in batch])

    def _on_reply(self, call: _QueuedCall, reply: Any) -> None:
        if isinstance(reply, NoScriptError):
            # Redis lost its script cache (SCRIPT FLUSH): run this call alone through
            # redis-py, which loads the script. NOSCRIPT means it did not run: safe.
            self._spawn(self._run_alone(call))
            return
        self._deliver(call, reply)

    async def _run_alone(self, call: _QueuedCall) -> None:
        try:
            reply = await self._scripts[call.name](args=[self._prefix, *call.args])
        except Exception as exc:
            reply = exc
        self._deliver(call, reply)

    async def _connect(self) -> None:
        assert self._endpoint is not None
        # Loaded on every (re)connection: a restarted Redis has lost them.
        setup = [
            encode_command(
                "SCRIPT", "LOAD", bytes(s.script) if isinstance(s.script, memoryview) else s.script
            )
            for s in self._scripts.values()
        ]
        try:
            if self._connection is not None:
                self._connection.close()
            self._connection = await RespConnection.open(self._endpoint, setup)
        except Exception as exc:  # no reply is known for any call waiting for it
            self._connection = None
            unsent, self._unsent = self._unsent, []
            for call in unsent:
                self._deliver(call, exc)
            return
        finally:
            self._connecting = None
        unsent, self._unsent = self._unsent, []
        # Calls whose caller left while the connection opened are not sent.
        batch = [call for call in unsent if not call.future.cancelled()]
        if batch:
            self._write(self._connection, batch)

    async def _run(self, batch: list[_QueuedCall]) -> None:
        """The redis-py path (URLs `proxy.store.resp` does not handle)."""
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
        """Send what is queued, wait for every reply (and what they queue: the release
        of a reservation whose caller left), then close the connection."""
        while True:
            if self._queued:
                self._send()
            if self._in_flight:
                await asyncio.wait(list(self._in_flight))
                continue
            if self._connection is not None:
                await self._connection.wait_idle()
            if not self._queued and not self._in_flight:
                break
            await asyncio.sleep(0)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
