"""The native upstream client's deadlines on one timer per connection
(`proxy.http_client`): a wait fails `read_timeout` after it began, never at an earlier
wait's deadline; a pooled connection closes `KEEPALIVE_SECONDS` after its last release,
not while in use. Driven on a fake clock: the moments are the test's, not the machine's."""

from __future__ import annotations

import asyncio

import pytest
from fake_clock import FakeClock

from proxy.http_client import KEEPALIVE_SECONDS, NativeUpstream, _Connection
from proxy.upstream import UpstreamTimeout

KEY = ("http", "upstream.test", 80)


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _connection(pool: NativeUpstream) -> tuple[_Connection, FakeClock, _Transport]:
    connection = _Connection(pool, KEY)
    clock = FakeClock(asyncio.get_running_loop())
    connection.loop = clock  # type: ignore[assignment]
    transport = _Transport()
    connection.transport = transport  # type: ignore[assignment]
    return connection, clock, transport


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize("read_timeout", [10.0, 0.3])
def test_each_wait_fails_its_own_read_timeout_after_it_began(read_timeout: float) -> None:
    async def run() -> None:
        connection, clock, transport = _connection(NativeUpstream(2.0, read_timeout))
        first = asyncio.create_task(connection.wait(read_timeout, "first"))
        await _settle()
        assert clock.armed() == 1
        connection._wake()  # the headers came
        await first
        clock.advance(read_timeout / 2)
        second = asyncio.create_task(connection.wait(read_timeout, "second"))
        await _settle()
        assert clock.armed() == 1  # the first wait's timer, kept
        clock.advance(read_timeout)  # the first wait's deadline: not the second's
        await _settle()
        assert not second.done()
        clock.advance(read_timeout / 2 + read_timeout - 1e-3)
        await _settle()
        assert not second.done()
        clock.advance(read_timeout / 2 + read_timeout)
        await _settle()
        with pytest.raises(UpstreamTimeout, match="second"):
            await second
        assert transport.closed

    asyncio.run(run())


def test_a_wait_answered_leaves_nothing_to_fail_later() -> None:
    async def run() -> None:
        connection, clock, transport = _connection(NativeUpstream(2.0, 5.0))
        waiting = asyncio.create_task(connection.wait(5.0, "answered"))
        await _settle()
        connection._wake()
        await waiting
        clock.advance(100.0)
        assert clock.armed() == 0
        assert not transport.closed

    asyncio.run(run())


def test_a_pooled_connection_closes_keepalive_seconds_after_its_last_release() -> None:
    async def run() -> None:
        pool = NativeUpstream(2.0, 5.0)
        await pool.start()
        connection, clock, transport = _connection(pool)
        last = 0.0
        for moment in (1.0, KEEPALIVE_SECONDS * 0.9, KEEPALIVE_SECONDS * 1.5):
            clock.advance(moment)
            pool.release(connection)
            last = moment
            assert clock.armed() == 1  # one idle timer however often it goes back
            clock.advance(moment + 0.5)
            assert pool._pooled(KEY) is connection
            clock.advance(moment + 0.75)
        pool.release(connection)
        last += 0.75
        clock.advance(last + KEEPALIVE_SECONDS - 1e-3)
        assert not transport.closed
        clock.advance(last + KEEPALIVE_SECONDS)
        assert transport.closed
        assert pool._pooled(KEY) is None

    asyncio.run(run())


def test_a_connection_in_use_when_its_timer_fires_stays_open() -> None:
    async def run() -> None:
        pool = NativeUpstream(2.0, 5.0)
        await pool.start()
        connection, clock, transport = _connection(pool)
        pool.release(connection)
        assert pool._pooled(KEY) is connection  # in use from here
        clock.advance(KEEPALIVE_SECONDS * 3)
        assert not transport.closed
        assert clock.armed() == 0
        pool.release(connection)
        clock.advance(KEEPALIVE_SECONDS * 4)
        assert transport.closed

    asyncio.run(run())
