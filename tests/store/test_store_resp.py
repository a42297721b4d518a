"""The Redis ledger's own connection (`proxy.store.resp`): which URLs it serves, how it
reads replies however they are split across reads, and what a caller sees when the
connection is lost or cannot be opened."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from store_backends import Backend

from proxy.store.redis_batch import _arguments
from proxy.store.redis_ledger import RedisLedgerStore, units_from_money, units_text
from proxy.store.resp import Endpoint, RespConnection, _Protocol, encode_command, endpoint_from_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None, 0, None, None)),
        ("redis://cache", ("cache", 6379, None, 0, None, None)),
        ("redis://:s%40cret@h:7000/3", ("h", 7000, None, 3, None, "s@cret")),
        ("redis://user:pw@h/2", ("h", 6379, None, 2, "user", "pw")),
        ("unix:///run/redis.sock", ("127.0.0.1", 6379, "/run/redis.sock", 0, None, None)),
        ("unix:///run/redis.sock?db=4", ("127.0.0.1", 6379, "/run/redis.sock", 4, None, None)),
    ],
)
def test_plain_urls_are_served(url: str, expected: tuple[Any, ...]) -> None:
    endpoint = endpoint_from_url(url)
    assert endpoint is not None
    got = (
        endpoint.host,
        endpoint.port,
        endpoint.path,
        endpoint.db,
        endpoint.username,
        endpoint.password,
    )
    assert got == expected


@pytest.mark.parametrize(
    "url",
    [
        "rediss://h:6380/0",
        "redis://h:6379/0?socket_timeout=2",
        "redis://h:6379/zero",
        "unix:///run/redis.sock?db=1&socket_timeout=2",
        "unix:///run/redis.sock?timeout=1",
    ],
)
def test_other_urls_are_left_to_redis_py(url: str) -> None:
    assert endpoint_from_url(url) is None


def test_encode_command() -> None:
    assert encode_command("EVALSHA", b"ab", 12, "é") == (
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
    )


REPLIES = (
    b"$2\r\nok\r\n"
    b"$-1\r\n"
    b":-42\r\n"
    b"+OK\r\n"
    b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n$0\r\n\r\n"
    b"-ERR wrong number of arguments\r\n"
    b"-NOSCRIPT No matching script.\r\n"
    b"*-1\r\n"
    b"$4\r\na\r\nb\r\n"
)


def _read(chunks: list[bytes]) -> list[Any]:
    protocol = _Protocol()
    got: list[Any] = []
    protocol.waiting.extend([got.append] * 9)
    for chunk in chunks:
        protocol.data_received(chunk)
    return got


def _check(got: list[Any]) -> None:
    assert got[:5] == [b"ok", None, -42, b"OK", [b"a", [1, None], b""]]
    assert type(got[5]) is ResponseError
    assert str(got[5]) == "ERR wrong number of arguments"
    assert isinstance(got[6], NoScriptError)
    assert got[7:] == [None, b"a\r\nb"]


def test_replies_are_read_in_one_piece() -> None:
    _check(_read([REPLIES]))


def test_replies_are_read_however_they_are_split() -> None:
    _check(_read([REPLIES[i : i + 1] for i in range(len(REPLIES))]))
    for cut in range(1, len(REPLIES)):
        _check(_read([REPLIES[:cut], REPLIES[cut:]]))


def test_an_unreadable_reply_fails_every_waiting_call() -> None:
    protocol = _Protocol()
    got: list[Any] = []
    protocol.waiting.extend([got.append] * 2)
    protocol.data_received(b"?what\r\n")
    assert len(got) == 2
    assert all(isinstance(reply, RedisConnectionError) for reply in got)


def test_a_lost_connection_fails_the_calls_in_flight_and_the_next_call_reconnects(
    redis_backend: Backend,
) -> None:
    async def body() -> tuple[Any, Decimal]:
        store = redis_backend.open()
        assert isinstance(store, RedisLedgerStore)
        try:
            await store.migrate()
            await store.ensure_defaults()
            key, _ = await store.create_key("default", Decimal("1"), "resp")
            first = await store.reserve(key.id, None, Decimal("0.01"))
            assert first is not None
            connection = store._batch._connection
            assert connection is not None
            # Written, then the connection goes before any reply can be read.
            pending = asyncio.ensure_future(store.reserve(key.id, None, Decimal("0.01")))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            connection.close()
            outcome = await asyncio.gather(pending, return_exceptions=True)
            second = await store.reserve(key.id, None, Decimal("0.01"))
            assert second is not None
            await store.settle(first, Decimal("0.01"))
            await store.settle(second, Decimal("0.01"))
            return outcome[0], (await store.get_key(key.id)).usage
        finally:
            await store.close()

    outcome, usage = redis_backend.run(body)
    assert isinstance(outcome, RedisConnectionError)
    assert usage == Decimal("0.02")


def test_a_closed_connection_fails_what_is_sent_on_it(redis_backend: Backend) -> None:
    async def body() -> list[Any]:
        connection = await RespConnection.open(Endpoint(host="127.0.0.1", port=6379))
        got: list[Any] = []
        connection.send([encode_command("PING")], [got.append])
        await connection.wait_idle()
        connection.close()
        assert not connection.usable
        connection.send([encode_command("PING")], [got.append])  # closing: not written
        await asyncio.sleep(0.01)
        return got

    got = redis_backend.run(body)
    assert got[0] == b"PONG"
    assert len(got) == 2 and isinstance(got[1], RedisConnectionError)


def test_a_connection_that_cannot_be_opened_fails_the_call(redis_backend: Backend) -> None:
    async def body() -> None:
        # The shared test Redis has no password: AUTH is refused.
        endpoint = Endpoint(host="127.0.0.1", port=6379, password="not-configured")
        with pytest.raises(ResponseError):
            await RespConnection.open(endpoint)
        # Nothing listens on port 1.
        with pytest.raises(OSError):
            await RespConnection.open(Endpoint(host="127.0.0.1", port=1))

    redis_backend.run(body)


@pytest.mark.parametrize("args", [("ab", 12, ""), ("é", -3, "日本"), ("1765084800.25", "x" * 300)])
def test_script_arguments_are_encoded_as_bulk_strings(args: tuple[str | int, ...]) -> None:
    # encode_command's array of the same arguments, without its `*N` header.
    whole = encode_command(*args)
    assert _arguments(args) == whole[whole.index(b"\r\n") + 2 :]


@pytest.mark.parametrize(
    "amount",
    ["0", "0.0025", "0.0000000001", "123.456789012", "5", "1e3", "1E+20", "0E+3", "-0", "-1e3"],
)
def test_script_amounts_are_sent_as_their_units_in_plain_digits(amount: str) -> None:
    """The request path's amounts go to the scripts as `units_text`: the same digits as
    `units_from_money`, never an exponent nor a negative zero (not integers to Redis)."""
    text = units_text(Decimal(amount))
    assert text == str(units_from_money(Decimal(amount)))
    assert text.lstrip("-").isdigit() and text != "-0"
