"""A small pool of psycopg async connections (psycopg_pool is not a dependency).

Connections open lazily up to `size`; a connection that broke while in use is
closed and replaced on the next acquire, so a PostgreSQL restart heals itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """At most `size` autocommit connections to `conninfo`, handed out one task at a time."""

    def __init__(self, conninfo: str, size: int) -> None:
        self._conninfo = conninfo
        self._idle: asyncio.Queue[psycopg.AsyncConnection[tuple[object, ...]]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(size)
        self._all: set[psycopg.AsyncConnection[tuple[object, ...]]] = set()

    async def _open(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        self._all.add(conn)
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        async with self._slots:
            conn = self._idle.get_nowait() if not self._idle.empty() else await self._open()
            try:
                yield conn
            finally:
                # A query cancelled half-way leaves the connection busy or in a transaction.
                idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if conn.closed or conn.broken or not idle:
                    self._all.discard(conn)
                    await conn.close()
                else:
                    self._idle.put_nowait(conn)

    async def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait()
        for conn in list(self._all):
            await conn.close()
        self._all.clear()
