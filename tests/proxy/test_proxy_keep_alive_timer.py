"""`gateway serve` closes an idle kept-alive connection when uvicorn would (its
`timeout_keep_alive` after the last response completed), with one timer per idle
period instead of one made and cancelled per request (`proxy.connection_deadlines`).
Driven on a fake clock: the moments are the test's, not the machine's."""

from __future__ import annotations

from typing import Any

from fake_clock import FakeClock
from uvicorn.config import Config
from uvicorn.server import ServerState

from proxy.connection_deadlines import ConnectionLimits, deadline_protocol

KEEP_ALIVE = 5.0


class _Transport:
    def __init__(self) -> None:
        self.closed_at: float | None = None
        self.loop: FakeClock | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed_at is not None

    def close(self) -> None:
        if self.closed_at is None:
            assert self.loop is not None
            self.closed_at = self.loop.now

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called here
    raise AssertionError


def _connection(loop: FakeClock) -> tuple[Any, _Transport]:
    limits = ConnectionLimits(header_read_timeout=3600, body_read_timeout=3600, max_connections=10)
    config = Config(_app, timeout_keep_alive=int(KEEP_ALIVE), log_config=None)
    protocol = deadline_protocol(limits)(
        config=config, server_state=ServerState(), app_state={}, _loop=loop
    )
    transport = _Transport()
    transport.loop = loop
    protocol.connection_made(transport)
    return protocol, transport


def test_a_connection_idle_for_the_keep_alive_period_is_closed_then() -> None:
    loop = FakeClock()
    protocol, transport = _connection(loop)
    loop.advance(1.0)
    protocol.on_response_complete()  # the first response: idle from 1 s
    loop.advance(1.0 + KEEP_ALIVE - 0.5)
    assert transport.closed_at is None
    loop.advance(100.0)
    assert transport.closed_at == 1.0 + KEEP_ALIVE


def test_requests_within_the_period_keep_it_open_until_the_last_ones_period_ends() -> None:
    loop = FakeClock()
    protocol, transport = _connection(loop)
    timers_at_start = loop.armed()
    last = 0.0
    for moment in (1.0, 3.0, 4.5, 8.0, 12.9):
        loop.advance(moment)
        protocol._unset_keepalive_if_required()  # what uvicorn does as bytes arrive
        loop.advance(moment + 0.25)
        protocol.on_response_complete()
        last = moment + 0.25
        assert transport.closed_at is None
        # One keep-alive timer at most, however many requests.
        assert loop.armed() <= timers_at_start + 1
    loop.advance(100.0)
    assert transport.closed_at == last + KEEP_ALIVE


def test_a_request_in_progress_when_the_period_ends_is_not_cut() -> None:
    loop = FakeClock()
    protocol, transport = _connection(loop)
    loop.advance(1.0)
    protocol.on_response_complete()
    loop.advance(2.0)
    protocol._unset_keepalive_if_required()  # the next request arrives, runs long
    loop.advance(60.0)
    assert transport.closed_at is None
    protocol.on_response_complete()  # it completes at 60 s: idle from then
    loop.advance(60.0 + KEEP_ALIVE - 0.01)
    assert transport.closed_at is None
    loop.advance(100.0)
    assert transport.closed_at == 60.0 + KEEP_ALIVE
