"""`gateway serve` writes a response's head with the body's first bytes
(`proxy.connection_deadlines._HeadCombiner`): same bytes in the same order, one write
instead of two, and a head whose body is not ready leaves at the loop's next turn."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.connection_deadlines import _HeadCombiner

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class _Transport:
    """Records each write call (a `writelines` is one call)."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.calls.append(data)

    def writelines(self, parts: Any) -> None:
        assert not self.closing
        self.calls.append(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _combiner(loop: asyncio.AbstractEventLoop) -> tuple[_HeadCombiner, _Transport]:
    transport = _Transport()
    return _HeadCombiner(transport, loop), transport  # type: ignore[arg-type]


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def run() -> list[bytes]:
        combiner, transport = _combiner(asyncio.get_running_loop())
        combiner.write(HEAD)
        assert transport.calls == []
        combiner.write(b"{}")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return transport.calls

    assert asyncio.run(run()) == [HEAD + b"{}"]


def test_a_head_whose_body_is_not_ready_leaves_at_the_next_turn() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        combiner, transport = _combiner(asyncio.get_running_loop())
        combiner.write(HEAD)
        await asyncio.sleep(0)  # one turn: the head is out, before any body
        before = list(transport.calls)
        combiner.write(b"{}")
        return before, transport.calls

    before, after = asyncio.run(run())
    assert before == [HEAD]
    assert after == [HEAD, b"{}"]


def test_other_writes_pass_straight_through_in_order() -> None:
    async def run() -> list[bytes]:
        combiner, transport = _combiner(asyncio.get_running_loop())
        combiner.write(b"chunk 1")
        combiner.write(b"chunk 2")
        return transport.calls

    assert asyncio.run(run()) == [b"chunk 1", b"chunk 2"]


def test_close_writes_a_held_head_first_and_nothing_is_written_after() -> None:
    async def run() -> list[bytes]:
        combiner, transport = _combiner(asyncio.get_running_loop())
        combiner.write(HEAD)
        combiner.close()
        assert combiner.is_closing()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return transport.calls

    assert asyncio.run(run()) == [HEAD]


def test_a_head_held_when_the_connection_closes_is_dropped() -> None:
    async def run() -> list[bytes]:
        combiner, transport = _combiner(asyncio.get_running_loop())
        combiner.write(HEAD)
        transport.close()  # closed below the cycle (the client left, a deadline)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return transport.calls

    assert asyncio.run(run()) == []


def test_the_transports_facts_are_the_real_ones() -> None:
    async def run() -> Any:
        combiner, _ = _combiner(asyncio.get_running_loop())
        return combiner.get_extra_info("peername"), combiner.get_extra_info("missing", 7)

    assert asyncio.run(run()) == (("127.0.0.1", 1), 7)


def test_writelines_passes_its_parts_in_one_call_after_a_held_head() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        combiner, transport = _combiner(asyncio.get_running_loop())
        combiner.writelines((HEAD, b"{}"))
        alone = list(transport.calls)
        combiner.write(HEAD)  # held, then overtaken by nothing: it leaves first
        combiner.writelines((b"a", b"b"))
        await asyncio.sleep(0)
        return alone, transport.calls

    alone, after = asyncio.run(run())
    assert alone == [HEAD + b"{}"]
    assert after == [HEAD + b"{}", HEAD + b"ab"]
