"""The native upstream client (proxy/http_client.py) against scripted raw servers, and
the same cases against the aiohttp client: both must answer alike."""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

import pytest
import uvloop

from proxy.http_client import HIGH_WATER, NativeUpstream
from proxy.upstream import (
    AiohttpUpstream,
    UpstreamCall,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamTimeout,
)

P = ParamSpec("P")


def _sync(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Runs an async test on its own event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _both_loops(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Runs an async test on asyncio's loop, then on uvloop's (what `gateway serve` runs)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(test(*args, **kwargs))

    return run


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CLIENTS = ("native", "aiohttp")


def _client(kind: str, read_timeout: float = 5.0) -> UpstreamClient:
    if kind == "native":
        return NativeUpstream(2.0, read_timeout)
    return AiohttpUpstream(2.0, read_timeout)


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request (head, body) or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length)
    return head, body


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"


def _call(url: str, body: bytes = b'{"a": 1}') -> UpstreamCall:
    return UpstreamCall(url=url, body=body, api_key="sk-up", headers=(("x-extra", "1"),))


def _reply(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _echo_server(server_heads: list[bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await _read_request(reader)) is not None:
            server_heads.append(request[0])
            writer.write(_reply(request[1]))
            await writer.drain()

    return handler


async def _started(kind: str, read_timeout: float = 5.0) -> UpstreamClient:
    client = _client(kind, read_timeout)
    await client.start()
    return client


@pytest.mark.parametrize("kind", CLIENTS)
@_both_loops
async def test_whole_reply_and_keep_alive_reuse(kind: str) -> None:
    heads: list[bytes] = []
    async with Server(_echo_server(heads)) as server:
        client = await _started(kind)
        try:
            for n in range(3):
                response = await client.send(_call(server.url, b'{"n": %d}' % n))
                assert response.status == 200
                assert response.content_type == "application/json"
                assert await response.read() == b'{"n": %d}' % n
                await response.close()
            assert client.responses_open == 0
            assert server.connections == 1  # one kept-alive connection for all three
        finally:
            await client.stop()
    head = heads[0].lower()
    assert head.startswith(b"post /v1/chat/completions http/1.1\r\n")
    assert b"authorization: bearer sk-up\r\n" in head
    assert b"x-extra: 1\r\n" in head
    assert b"user-agent" not in head and b"cookie" not in head


@_sync
async def test_native_asks_for_no_compression() -> None:
    heads: list[bytes] = []
    async with Server(_echo_server(heads)) as server:
        client = await _started("native")
        try:
            response = await client.send(_call(server.url))
            await response.read()
            await response.close()
        finally:
            await client.stop()
    assert b"accept-encoding: identity\r\n" in heads[0].lower()


@pytest.mark.parametrize("kind", CLIENTS)
@_both_loops
async def test_chunked_stream_arrives_before_the_end(kind: str) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _read_request(reader) is not None
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
        )
        await writer.drain()
        await release.wait()
        writer.write(b"7\r\nsecond\n\r\n0\r\n\r\n")
        await writer.drain()
        assert await _read_request(reader) is None

    async with Server(handler) as server:
        client = await _started(kind)
        try:
            response = await client.send(_call(server.url))
            assert response.content_type == "text/event-stream"
            chunks = response.chunks()
            assert await chunks.__anext__() == b"first\n"  # before the server finishes
            release.set()
            rest = [chunk async for chunk in chunks]
            assert b"".join(rest) == b"second\n"
            await response.close()
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_reply_read_until_close(kind: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _read_request(reader) is not None
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"x"')
        await writer.drain()
        writer.write(b": 1}")
        await writer.drain()

    async with Server(handler) as server:
        client = await _started(kind)
        try:
            response = await client.send(_call(server.url))
            assert await response.read() == b'{"x": 1}'
            await response.close()
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_upstream_closing_mid_reply_is_a_connect_error(kind: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _read_request(reader) is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with Server(handler) as server:
        client = await _started(kind)
        try:
            response = await client.send(_call(server.url))
            with pytest.raises(UpstreamConnectError):
                await response.read()
            await response.close()
            response = await client.send(_call(server.url))
            with pytest.raises(UpstreamConnectError):
                async for _ in response.chunks():
                    pass
            await response.close()
            assert client.responses_open == 0
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_malformed_reply_is_a_connect_error(kind: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _read_request(reader) is not None
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with Server(handler) as server:
        client = await _started(kind)
        try:
            with pytest.raises(UpstreamConnectError):
                response = await client.send(_call(server.url))
                await response.read()
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_connect_refused_is_a_connect_error(kind: str) -> None:
    async with Server(_echo_server([])) as server:
        url = server.url
    client = await _started(kind)
    try:
        with pytest.raises(UpstreamConnectError):
            await client.send(_call(url))
        assert client.responses_open == 0
    finally:
        await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_read_timeout_before_headers_and_between_chunks(kind: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        assert request is not None
        if request[1] == b"hang":
            await asyncio.sleep(5)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with Server(handler) as server:
        client = await _started(kind, read_timeout=0.3)
        try:
            with pytest.raises(UpstreamTimeout):
                await client.send(_call(server.url, b"hang"))
            response = await client.send(_call(server.url, b"stall"))
            received = []
            with pytest.raises(UpstreamTimeout):
                async for chunk in response.chunks():
                    received.append(chunk)
            assert received == [b"abc"]
            await response.close()
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_stale_pooled_connection_is_retried_once(kind: str) -> None:
    """The server closes the kept-alive connection after each reply (without saying so):
    the next call meets a dead pooled connection and must still succeed."""
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        request = await _read_request(reader)
        assert request is not None
        served += 1
        writer.write(_reply(request[1]))
        await writer.drain()
        # closes (finally in Server) while the client believes it alive

    async with Server(handler) as server:
        client = await _started(kind)
        try:
            for n in range(3):
                response = await client.send(_call(server.url, b'{"n": %d}' % n))
                assert await response.read() == b'{"n": %d}' % n
                await response.close()
                await asyncio.sleep(0.05)  # let the close reach the client (or not)
            assert served == 3  # each request processed exactly once
        finally:
            await client.stop()


@_sync
async def test_native_retries_a_connection_closed_unread_only_when_reused() -> None:
    """A fresh connection lost before any reply byte is a 502, not a second POST."""
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        await _read_request(reader)  # read it, answer nothing, close

    async with Server(handler) as server:
        client = await _started("native")
        try:
            with pytest.raises(UpstreamConnectError):
                await client.send(_call(server.url))
            assert server.connections == 1
        finally:
            await client.stop()


@_both_loops
async def test_native_stale_connection_retry_races_the_close() -> None:
    """The pooled connection dies while our request is on the wire: retried once."""
    closers: list[asyncio.StreamWriter] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        assert request is not None
        writer.write(_reply(request[1]))
        await writer.drain()
        if len(closers) == 0:
            closers.append(writer)
            # the next request is read and dropped unanswered: a server closing an
            # idle connection just as the request arrives
            await _read_request(reader)

    async with Server(handler) as server:
        client = await _started("native")
        try:
            for n in range(2):
                response = await client.send(_call(server.url, b'{"n": %d}' % n))
                assert await response.read() == b'{"n": %d}' % n
                await response.close()
            assert server.connections == 2
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_a_reply_cut_short_does_not_go_back_to_the_pool(kind: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while (request := await _read_request(reader)) is not None:
            body = request[1] * 1000
            if first and request[1] == b"x":
                # half the reply, then nothing until the client goes away
                writer.write(_reply(body + body)[: -len(body)])
                await writer.drain()
                await reader.read()
                return
            first = False
            writer.write(_reply(body))
            await writer.drain()

    async with Server(handler) as server:
        client = await _started(kind)
        try:
            response = await client.send(_call(server.url, b"x"))
            await response.chunks().__anext__()
            await response.close()  # before the end: the connection is dropped
            response = await client.send(_call(server.url, b"y"))
            assert await response.read() == b"y" * 1000
            await response.close()
            assert server.connections == 2
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@_sync
async def test_large_bodies_both_ways(kind: str) -> None:
    big = b'{"blob": "' + b"z" * 5_000_000 + b'"}'
    async with Server(_echo_server([])) as server:
        client = await _started(kind)
        try:
            response = await client.send(_call(server.url, big))
            assert await response.read() == big
            await response.close()
            response = await client.send(_call(server.url, big))
            assert b"".join([chunk async for chunk in response.chunks()]) == big
            await response.close()
            assert server.connections == 1
        finally:
            await client.stop()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@_sync
async def test_native_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context trusts it
    heads: list[bytes] = []

    server = await asyncio.start_server(_echo_server(heads), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client = await _started("native")
    try:
        for n in range(2):
            response = await client.send(_call(f"https://localhost:{port}/v1/x", b"%d" % n))
            assert await response.read() == b"%d" % n
            await response.close()
        assert b"host: localhost:%d\r\n" % port in heads[0].lower()
        # An untrusted certificate: the connection fails as any other (502).
        monkeypatch.delenv("SSL_CERT_FILE")
        other = await _started("native")
        try:
            with pytest.raises(UpstreamConnectError):
                await other.send(_call(f"https://localhost:{port}/v1/x"))
        finally:
            await other.stop()
    finally:
        await client.stop()
        server.close()


@_both_loops
async def test_native_stops_reading_while_the_consumer_lags() -> None:
    """A consumer that takes nothing: the buffer stays bounded (reading is paused), and
    the whole body still arrives once it reads."""
    body = b"q" * 20_000_000  # far more than the socket buffers hold

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _read_request(reader) is not None
        writer.write(_reply(body))
        await writer.drain()
        assert await _read_request(reader) is None

    async with Server(handler) as server:
        client = NativeUpstream(2.0, 30.0)
        await client.start()
        try:
            response = await client.send(_call(server.url))
            connection = response._connection
            for _ in range(1000):  # until reading pauses (no timing is asserted)
                if connection.paused:
                    break
                await asyncio.sleep(0.01)
            assert connection.paused
            # one socket read past the mark at most (asyncio/uvloop read 256 KiB at most)
            assert connection.buffered <= HIGH_WATER + 256 * 1024
            assert b"".join([chunk async for chunk in response.chunks()]) == body
            await response.close()
        finally:
            await client.stop()


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize(
    "header",
    [
        ("x-extra", "1\r\nx-smuggled: 1"),
        ("x-extra", "1\nx-smuggled: 1"),
        ("x-extra", "1\rx-smuggled: 1"),
        ("x-extra\r\nx-smuggled", "1"),
    ],
)
@_sync
async def test_a_header_with_a_line_break_is_refused_before_sending(
    kind: str, header: tuple[str, str]
) -> None:
    heads: list[bytes] = []
    async with Server(_echo_server(heads)) as server:
        client = await _started(kind)
        try:
            call = UpstreamCall(url=server.url, body=b"{}", api_key="sk-up", headers=(header,))
            with pytest.raises(ValueError):
                await client.send(call)
        finally:
            await client.stop()
    assert heads == []


@_sync
async def test_the_kept_head_start_is_per_credential_and_a_bad_one_is_refused_each_time() -> None:
    """Calls without client headers reuse a head start made once per provider entry
    (URL, credential, how it is sent): each call's head is still exactly its own, and a
    credential that would smuggle a line is refused on every call, nothing sent."""
    heads: list[bytes] = []
    async with Server(_echo_server(heads)) as server:
        client = await _started("native")
        host = server.url.split("/")[2]
        calls = [
            UpstreamCall(url=server.url, body=b'{"n": 1}', api_key="sk-a"),
            UpstreamCall(url=server.url, body=b'{"n": 22}', api_key="sk-b"),
            UpstreamCall(url=server.url, body=b'{"n": 3}', api_key="sk-a", auth="x-api-key"),
            UpstreamCall(url=server.url, body=b'{"n": 4}', api_key=None),
            UpstreamCall(url=server.url, body=b'{"n": 55}', api_key="sk-a"),
        ]
        try:
            for call in calls:
                response = await client.send(call)
                assert await response.read() == call.body
                await response.close()
            for _ in range(2):
                bad = UpstreamCall(url=server.url, body=b"{}", api_key="sk\r\nx-smuggled: 1")
                with pytest.raises(ValueError):
                    await client.send(bad)
        finally:
            await client.stop()
    credentials = [
        b"Authorization: Bearer sk-a\r\n",
        b"Authorization: Bearer sk-b\r\n",
        b"x-api-key: sk-a\r\n",
        b"",
        b"Authorization: Bearer sk-a\r\n",
    ]
    assert heads == [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Accept: */*\r\nAccept-Encoding: identity\r\n%sContent-Length: %d\r\n\r\n"
        % (host.encode(), credential, len(call.body))
        for credential, call in zip(credentials, calls, strict=True)
    ]
