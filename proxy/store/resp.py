"""One pipelined Redis connection for the request path's script calls (RESP2).

redis-py sends a pipeline through a pool checkout, a `Pipeline` object, its retry and
observability wrappers and a pure-Python reply parser; measured in the store alone
(`bench/store_request_cpu.py`), that machinery, not Redis, was most of the ledger's
CPU per request and of the latency it adds at one request at a time. `RespConnection`
does only what the ledger's hot path needs: it writes already encoded commands to one
socket and hands each reply, in order, to the callback queued with its command.

One connection also orders every call: Redis runs the commands of one client in the
order they were written, so a settlement sent before an admission is applied first.

Replies: a bulk or simple string is `bytes`, an integer `int`, nil `None`, an array a
`list`, an error a `redis.exceptions.ResponseError` (`NoScriptError` for NOSCRIPT)
delivered as the reply, as redis-py's `raise_on_error=False` does. When the connection
is lost, every command still waiting gets a `redis.exceptions.ConnectionError`: its
outcome is unknown, exactly as with a failed redis-py pipeline.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Endpoint", "RespConnection", "encode_command", "endpoint_from_url"]

Reply = Callable[[Any], None]
"""Receives one command's reply (a value or an exception instance)."""


class Endpoint:
    """Where and how to connect: a TCP host and port or a Unix socket path, the
    credentials and database to select."""

    __slots__ = ("db", "host", "password", "path", "port", "username")

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.db = db
        self.username = username
        self.password = password


def endpoint_from_url(url: str) -> Endpoint | None:
    """The endpoint of a plain `redis://host:port/db` or `unix:///path?db=N` URL, with
    optional credentials; None for anything else (TLS, connection options), which the
    caller then sends through redis-py."""
    parts = urlsplit(url)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if parts.scheme == "redis":
        if parts.query or parts.fragment:
            return None
        path = parts.path.lstrip("/")
        if path and not path.isdigit():
            return None
        return Endpoint(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(path) if path else 0,
            username=username,
            password=password,
        )
    if parts.scheme == "unix":
        db = 0
        if parts.query:
            key, _, value = parts.query.partition("=")
            if key != "db" or not value.isdigit() or "&" in value:
                return None
            db = int(value)
        if not parts.path or parts.fragment:
            return None
        return Endpoint(path=parts.path, db=db, username=username, password=password)
    return None


def encode_command(*args: bytes | str | int) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = (
            arg
            if isinstance(arg, bytes)
            else arg.encode("utf-8")
            if isinstance(arg, str)
            else b"%d" % arg
        )
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def _error(line: bytes) -> ResponseError:
    text = line.decode("utf-8", "replace")
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)


def _parse(buffer: bytes, start: int) -> tuple[Any, int]:
    """The reply starting at `start` and the offset after it."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind = buffer[start]
    line = buffer[start + 1 : end]
    if kind == 36:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buffer) < stop + 2:
            raise _Incomplete
        return buffer[end + 2 : stop], stop + 2
    if kind == 58:  # : integer
        return int(line), end + 2
    if kind == 43:  # + simple string
        return line, end + 2
    if kind == 45:  # - error
        return _error(line), end + 2
    if kind == 42:  # * array
        count = int(line)
        if count < 0:
            return None, end + 2
        items = []
        offset = end + 2
        for _ in range(count):
            item, offset = _parse(buffer, offset)
            items.append(item)
        return items, offset
    raise ValueError(f"unexpected Redis reply type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[Reply] = deque()
        self.lost = False
        self._buffer = b""
        self._idle: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        waiting = self.waiting
        try:
            while offset < len(buffer):
                reply, offset = _parse(buffer, offset)
                waiting.popleft()(reply)
        except _Incomplete:
            pass
        except Exception as exc:  # a reply we cannot read: the stream is unusable
            self._buffer = b""
            self._fail(RedisConnectionError(f"unreadable reply from Redis: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        self._buffer = buffer[offset:]
        if not waiting and self._idle:
            self._wake_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        waiting, self.waiting = self.waiting, deque()
        for reply in waiting:
            reply(error)
        self._wake_idle()

    def _wake_idle(self) -> None:
        idle, self._idle = self._idle, []
        for future in idle:
            if not future.done():
                future.set_result(None)

    async def wait_idle(self) -> None:
        if self.waiting and not self.lost:
            future = asyncio.get_running_loop().create_future()
            self._idle.append(future)
            await future


class RespConnection:
    """One open connection: `send` writes commands, each reply goes to its callback."""

    def __init__(self, protocol: _Protocol, loop: asyncio.AbstractEventLoop) -> None:
        self._protocol = protocol
        self.loop = loop
        """The loop the connection was opened on: its replies arrive there."""

    @classmethod
    async def open(cls, endpoint: Endpoint, setup: Sequence[bytes] = ()) -> RespConnection:
        """Connect, authenticate, select the database and send `setup` (encoded
        commands, such as SCRIPT LOAD); an error reply to any of them fails the open."""
        loop = asyncio.get_running_loop()
        protocol = _Protocol()
        if endpoint.path is not None:
            await loop.create_unix_connection(lambda: protocol, endpoint.path)
        else:
            await loop.create_connection(lambda: protocol, endpoint.host, endpoint.port)
        connection = cls(protocol, loop)
        commands = []
        if endpoint.password is not None:
            credentials = (
                (endpoint.password,)
                if endpoint.username is None
                else (endpoint.username, endpoint.password)
            )
            commands.append(encode_command("AUTH", *credentials))
        if endpoint.db:
            commands.append(encode_command("SELECT", endpoint.db))
        commands += setup
        if commands:
            replies: list[Any] = []
            done = loop.create_future()

            def collect(reply: Any) -> None:
                replies.append(reply)
                if len(replies) == len(commands) and not done.done():
                    done.set_result(None)

            connection.send(commands, [collect] * len(commands))
            try:
                await done
            except BaseException:
                connection.close()
                raise
            failed = next((r for r in replies if isinstance(r, Exception)), None)
            if failed is not None:
                connection.close()
                raise failed
        return connection

    @property
    def idle(self) -> bool:
        """Open and usable, with no reply outstanding."""
        protocol = self._protocol
        transport = protocol.transport
        return (
            not protocol.waiting
            and not protocol.lost
            and transport is not None
            and not transport.is_closing()
        )

    @property
    def usable(self) -> bool:
        transport = self._protocol.transport
        return not self._protocol.lost and transport is not None and not transport.is_closing()

    def send(self, commands: Sequence[bytes], replies: Sequence[Reply]) -> None:
        """Write `commands` at once; `replies[i]` gets the reply to `commands[i]` (a
        `ConnectionError` at once if the connection is closed or closing)."""
        protocol = self._protocol
        transport = protocol.transport
        if protocol.lost or transport is None or transport.is_closing():
            error = RedisConnectionError("connection to Redis lost")
            for reply in replies:
                reply(error)
            return
        protocol.waiting.extend(replies)
        transport.write(commands[0] if len(commands) == 1 else b"".join(commands))

    async def wait_idle(self) -> None:
        """Return once every reply sent for has arrived (or the connection is lost)."""
        await self._protocol.wait_idle()

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
