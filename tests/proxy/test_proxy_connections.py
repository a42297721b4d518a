"""Issue 12 point 4: silent and slow connections are closed by deadlines while other
clients are served, and connections beyond `max_connections` get a clear 503.

The deadlines are short here (a second) so the test is quick; nothing asserts how
long anything took, only that it happened within a generous bound."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from proxy_deployment import Deployment, deployed
from proxy_helpers import auth, chat, make_tenant
from shipped_policy import ShippedPolicies

SILENT = 150
SLOW = 150
CAP = SILENT + SLOW + 20
SMALL_CAP = 20
GENEROUS_S = 20.0


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("connections"),
        compile_policy=shipped_policies.loader,
        header_read_timeout=1.0,
        body_read_timeout=1.0,
        keep_alive_timeout=0.5,
        max_connections=CAP,
    ) as running:
        yield running


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GENEROUS_S)


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """After the request line: one header line whenever 0.3 s pass without the server's
    answer, never the blank line; returns everything the server sent until it closed
    the connection. Nothing is written once the answer is in: a write to a connection
    the server closed is reset, and the reset discarded the 408 the client had not
    read yet (on a loaded machine the answers spread over more than two intervals)."""
    answer = asyncio.ensure_future(_answer(reader))
    number = 0
    while not (await asyncio.wait({answer}, timeout=0.3))[0]:
        number += 1
        writer.write(b"X-Slow-%d: 1\r\n" % number)
    writer.close()
    return await answer


async def _slow(port: int) -> asyncio.Task[bytes]:
    """A connection whose request line is sent as soon as it is open, before the next
    one is opened: only its headers' end is missing, so the server owes it a 408
    however long a loaded machine takes to open the others."""
    reader, writer = await _connect(port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    return asyncio.create_task(_trickle(reader, writer))


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def _body(raw: bytes) -> object:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def test_silent_and_slow_connections_are_closed_while_others_are_served(
    deployment: Deployment,
) -> None:
    tenant = make_tenant(deployment.admin)
    port = deployment.gateway.port

    async def scenario() -> tuple[list[bytes], list[bytes], list[int]]:
        silent = [await _connect(port) for _ in range(SILENT)]
        slow = [await _slow(port) for _ in range(SLOW)]
        statuses = []
        async with httpx.AsyncClient(base_url=deployment.url, timeout=GENEROUS_S) as client:
            for _ in range(5):
                response = await client.post(
                    "/v1/chat/completions", json=chat(), headers=auth(tenant.token, "bearer")
                )
                statuses.append(response.status_code)
        silent_seen = await asyncio.gather(*(_answer(reader) for reader, _ in silent))
        slow_seen = await asyncio.gather(*slow)
        for _, writer in silent:
            writer.close()
        return silent_seen, slow_seen, statuses

    silent_seen, slow_seen, statuses = asyncio.run(scenario())
    assert statuses == [200] * 5
    assert silent_seen == [b""] * SILENT  # closed without a word: nothing was asked
    assert {_status(raw) for raw in slow_seen} == {408}
    assert _body(slow_seen[0]) == {
        "error": True,
        "status": 408,
        "message": "Request Timeout: the request headers did not arrive within 1 seconds",
    }


def test_a_body_that_never_finishes_gets_408(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    port = deployment.gateway.port

    async def scenario() -> bytes:
        reader, writer = await _connect(port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Authorization: Bearer " + tenant.token.encode() + b'\r\n\r\n{"model"'
        )
        seen = await _answer(reader)
        writer.close()
        return seen

    seen = asyncio.run(scenario())
    assert _status(seen) == 408
    assert deployment.admin(deployment.admin.store.get_key(tenant.key.id)).usage == 0


def test_an_idle_kept_alive_connection_is_closed(deployment: Deployment) -> None:
    port = deployment.gateway.port

    async def scenario() -> tuple[bytes, bytes]:
        reader, writer = await _connect(port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS_S)
        rest = await _answer(reader)  # the body, then the close when idle
        writer.close()
        return head, rest

    head, rest = asyncio.run(scenario())
    assert _status(head) == 200
    assert rest == b'{"status":"ok"}'


@pytest.fixture(scope="module")
def small_cap(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies
) -> Iterator[Deployment]:
    """A low cap and a header deadline long enough that none of the held connections is
    closed before the one beyond the cap arrives, however slowly a loaded machine opens
    them (with the 320-connection cap and a 1 s deadline above, the first ones could be
    closed already, and the extra connection then fit under the cap)."""
    with deployed(
        tmp_path_factory.mktemp("connection_cap"),
        compile_policy=shipped_policies.loader,
        header_read_timeout=3.0,
        max_connections=SMALL_CAP,
    ) as running:
        yield running


def test_connections_beyond_the_cap_get_a_clear_503(small_cap: Deployment) -> None:
    deployment = small_cap
    port = deployment.gateway.port

    async def scenario() -> tuple[bytes, int]:
        held = [await _connect(port) for _ in range(SMALL_CAP)]
        reader, writer = await _connect(port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = await _answer(reader)
        writer.close()
        for held_reader, _ in held:  # the header deadline closes them all
            await _answer(held_reader)
        for _, held_writer in held:
            held_writer.close()
        async with httpx.AsyncClient(base_url=deployment.url, timeout=GENEROUS_S) as client:
            after = (await client.get("/healthz")).status_code
        return refused, after

    refused, after = asyncio.run(scenario())
    assert _status(refused) == 503
    body = _body(refused)
    assert isinstance(body, dict) and "`max_connections`" in body["message"]
    assert after == 200


def test_a_client_still_sending_after_the_deadline_reads_its_408(deployment: Deployment) -> None:
    """Closing a socket with unread input makes the kernel reset the connection, which
    can destroy the 408 already sent: the gateway half-closes and drops what still
    arrives instead (a lingering close), so the client always reads its answer."""
    port = deployment.gateway.port

    async def scenario() -> bytes:
        reader, writer = await _connect(port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        number = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5  # past the 1 s header deadline, sending all along
        while loop.time() < until:
            number += 1
            writer.write(b"X-Busy-%d: 1\r\n" % number)
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.005)
        answer = await _answer(reader)
        writer.close()
        return answer

    answer = asyncio.run(scenario())
    assert _status(answer) == 408
    assert _body(answer) == {
        "error": True,
        "status": 408,
        "message": "Request Timeout: the request headers did not arrive within 1 seconds",
    }
