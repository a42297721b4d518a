"""Issue 13 point 2's acceptance through the real server: rate limits per key and per
project on one SQLite gateway, on two gateways sharing PostgreSQL and on two sharing
PostgreSQL + Redis.

The request time comes from an injectable clock shared by the gateways (never a sleep):
RPM 60 admits at most 60 in any minute window, across both instances, and admits again
once the window has moved; TPM counts the tokens the provider reported once a request
settled (its reservation is the bound until then); max-parallel 4 refuses the fifth
concurrent request (streams held open by the test upstream) and admits again when they
finish. Every answer of a rate-limited key carries OpenAI's x-ratelimit-* headers, and
refusals `Retry-After`; no token reaches a log line or /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from shipped_policy import ShippedPolicies
from store_backends import make_backend

# The in-process gateway and upstream servers of the proxy tests (tests/proxy): the
# gateways here must share the test's clock, so they cannot be `gateway serve` processes.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from proxy_deployment import (
    DOWN_KEY_ENV,
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    LogCapture,
    gateway_config,
)
from proxy_test_servers import GatewayServer, LoopThread, UpstreamServer

from proxy.app import create_app
from proxy.store import Store, open_store
from proxy.store.base import RateLimits, RateState

pytestmark = [pytest.mark.timeout(180)]

RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


class Clock:
    """The request time every gateway sees; the test moves it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def epoch(self) -> float:
        return self.now.timestamp()


@dataclass
class Gateways:
    urls: list[str]
    clock: Clock
    upstream: UpstreamServer
    logs: LogCapture
    admin: Store
    thread: LoopThread

    def run(self, coro: Any) -> Any:
        return self.thread.run(coro)

    async def key(self, **limits: int) -> tuple[str, str, str]:
        """A fresh project and key with `limits`; returns (key id, token, project id)."""
        project = f"rl-{os.urandom(4).hex()}"
        await self.admin.create_project(project, "default", "hybrid")
        key, token = await self.admin.create_key(
            project, None, "rate test", rate_limits=RateLimits(**limits)
        )
        return key.id, token, project


@contextmanager
def _gateways(
    kind: str, servers: int, tmp_path: Path, policies: ShippedPolicies
) -> Iterator[Gateways]:
    backends = make_backend(kind, tmp_path)
    backend = next(backends)
    logs = LogCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    saved = {name: os.environ.get(name) for name in (UPSTREAM_KEY_ENV, DOWN_KEY_ENV)}
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    os.environ[DOWN_KEY_ENV] = "gsk-down-test"
    clock = Clock()
    thread = LoopThread()
    with ExitStack() as stack:
        upstream = UpstreamServer()
        upstream.start()
        stack.callback(upstream.stop)
        config = gateway_config(
            tmp_path,
            upstream,
            database=backend.database_url,
            usage_store=backend.usage_store_url,
            upstream_read_timeout=30.0,
        )
        urls = []
        for instance in range(servers):
            app = create_app(config, clock=clock, policy=policies.holder(instance))
            server = GatewayServer(app, config)
            server.start()
            stack.callback(server.stop)
            urls.append(server.url)
        # The servers' own prefix (derived from the database URL), not the test one.
        admin = open_store(backend.database_url, backend.usage_store_url)
        thread.run(admin.migrate())
        try:
            yield Gateways(urls, clock, upstream, logs, admin, thread)
        finally:
            thread.run(admin.close())
            thread.stop()
            root.removeHandler(logs)
            root.setLevel(previous)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    backends.close()


@pytest.fixture(
    params=[("sqlite", 1), ("postgres", 2), ("redis", 2)],
    ids=["sqlite", "postgres-x2", "postgres+redis-x2"],
)
def gateways(
    request: pytest.FixtureRequest, tmp_path: Path, shipped_policies: ShippedPolicies
) -> Iterator[Gateways]:
    kind, servers = request.param
    with _gateways(kind, servers, tmp_path, shipped_policies) as running:
        yield running


MOCK = {
    "model": "mock-model",
    "messages": [{"role": "user", "content": "hi there"}],
    "max_tokens": 8,
}


async def _burst(urls: list[str], token: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        f"{urls[i % len(urls)]}/v1/chat/completions",
                        json=MOCK,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    for i in range(count)
                )
            )
        )


def _statuses(responses: list[httpx.Response]) -> dict[int, int]:
    out: dict[int, int] = {}
    for response in responses:
        out[response.status_code] = out.get(response.status_code, 0) + 1
    return out


def test_rpm_60_admits_at_most_60_in_any_minute_window(gateways: Gateways) -> None:
    key_id, token, _ = gateways.run(gateways.key(rpm=60))
    urls = gateways.urls
    start = gateways.clock.epoch

    first = asyncio.run(_burst(urls, token, 40))  # t = 0
    assert _statuses(first) == {200: 40}
    gateways.clock.advance(30)
    second = asyncio.run(_burst(urls, token, 40))  # t = 30: only 20 more fit the minute
    assert _statuses(second) == {200: 20, 429: 20}
    refused = next(r for r in second if r.status_code == 429)
    message = (
        f"Rate limit reached for API key {key_id} on requests per min (RPM): "
        "Limit 60, Used 60, Requested 1. Please try again in 30s."
    )
    assert refused.json() == {"error": True, "status": 429, "message": message}
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    for response in [*first, *second]:  # every answer of the key, allowed or not
        assert all(name in response.headers for name in RATE_HEADERS), response.headers
        assert response.headers["x-ratelimit-limit-requests"] == "60"

    gateways.clock.advance(29)  # t = 59: the first 40 are still in the window
    assert _statuses(asyncio.run(_burst(urls, token, 5))) == {429: 5}
    gateways.clock.advance(1)  # t = 60: they have left it, the 20 of t = 30 have not
    third = asyncio.run(_burst(urls, token, 45))
    assert _statuses(third) == {200: 40, 429: 5}
    windows: RateState = gateways.run(gateways.admin.rate_windows(key_id, "", start + 60))
    assert windows.key is not None and windows.key.requests == 60


def test_tpm_counts_the_tokens_the_provider_reported(gateways: Gateways) -> None:
    url = gateways.urls[0]

    def post(token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.post(f"{url}/v1/chat/completions", json=MOCK, headers=headers, timeout=30)

    # A probe learns the request's bound: while admitted, the window held it.
    _, probe_token, _ = gateways.run(gateways.key(tpm=100_000))
    probe = post(probe_token)
    assert probe.status_code == 200 and probe.headers["x-ratelimit-limit-tokens"] == "100000"
    bound = 100_000 - int(probe.headers["x-ratelimit-remaining-tokens"])
    usage = probe.json()["usage"]
    settled = usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < settled < bound

    # Room for one bound plus one settled request: a second request fits only because
    # the first one's reservation was corrected to what the provider reported.
    key_id, token, project = gateways.run(gateways.key(tpm=settled + bound))
    assert post(token).status_code == 200
    windows = gateways.run(gateways.admin.rate_windows(key_id, project, gateways.clock.epoch))
    assert windows.key is not None and windows.key.tokens == settled
    assert post(token).status_code == 200
    third = post(token)
    assert third.status_code == 429
    assert third.json()["message"] == (
        f"Rate limit reached for API key {key_id} on tokens per min (TPM): "
        f"Limit {settled + bound}, Used {2 * settled}, Requested {bound}. "
        "Please try again in 60s."
    )
    assert third.headers["retry-after"] == "60"
    assert third.headers["x-ratelimit-remaining-tokens"] == str(bound - settled)
    gateways.clock.advance(60)
    assert post(token).status_code == 200


def test_max_parallel_4_refuses_the_fifth_concurrent_request(gateways: Gateways) -> None:
    key_id, token, _ = gateways.run(gateways.key(max_parallel=4, rpm=1000))
    urls = gateways.urls
    headers = {"Authorization": f"Bearer {token}"}
    held = {"model": "gpt-4", "messages": [{"role": "user", "content": "wait"}], "stream": True}

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            streams = []
            for i in range(4):  # four streams, held open by the upstream after two chunks
                request = client.build_request(
                    "POST", f"{urls[i % len(urls)]}/v1/chat/completions", json=held, headers=headers
                )
                response = await client.send(request, stream=True)
                assert response.status_code == 200
                assert response.headers["x-ratelimit-limit-requests"] == "1000"  # streams too
                chunks = response.aiter_raw()
                await anext(chunks)
                streams.append((response, chunks))
            fifth = await client.post(f"{urls[-1]}/v1/chat/completions", json=MOCK, headers=headers)
            assert fifth.status_code == 429
            message = (
                f"Too many parallel requests for API key {key_id}: Limit 4, In flight 4. "
                "Please try again when one of them has finished."
            )
            assert fifth.json()["message"] == message
            assert fifth.headers["retry-after"] == "1"
            assert fifth.headers["x-ratelimit-remaining-requests"] == str(1000 - 4)
            gateways.upstream.release_stream()
            for response, chunks in streams:
                async for _ in chunks:
                    pass
                await response.aclose()
            again = await client.post(f"{urls[-1]}/v1/chat/completions", json=MOCK, headers=headers)
            assert again.status_code == 200, again.text

    asyncio.run(scenario())


def test_project_limits_hold_for_all_its_keys_and_no_token_is_logged(
    gateways: Gateways,
) -> None:
    _, token_a, project = gateways.run(gateways.key())
    gateways.run(gateways.admin.set_project_rate_limits(project, RateLimits(rpm=10)))
    other, token_b = gateways.run(gateways.admin.create_key(project, None, "second"))
    responses = [
        *asyncio.run(_burst(gateways.urls, token_a, 8)),
        *asyncio.run(_burst(gateways.urls, token_b, 8)),
    ]
    assert _statuses(responses) == {200: 10, 429: 6}
    refused = next(r for r in responses if r.status_code == 429)
    assert f"for project {project} on requests per min (RPM): Limit 10" in refused.json()["message"]
    metrics = httpx.get(f"{gateways.urls[0]}/metrics", timeout=10).text
    for secret in (token_a, token_b):
        assert secret not in gateways.logs.text
        assert secret not in metrics
    decisions = [
        msgspec.json.decode(line.removeprefix("gateway.decision INFO "))
        for line in gateways.logs.lines
        if line.startswith("gateway.decision INFO ")
    ]
    codes = {d.get("reason_code") for d in decisions if d.get("key_id") == other.id}
    assert "rate_limit_requests" in codes


def test_a_client_leaving_mid_stream_or_a_failed_upstream_frees_the_slot(
    gateways: Gateways,
) -> None:
    """On every backend: a stream the client leaves settles at what was relayed (less
    than its bound) and leaves no request in flight; a 503 upstream gives its tokens
    back. Both ask another gateway than the one that admitted them next."""
    key_id, token, project = gateways.run(gateways.key(max_parallel=1, tpm=100_000))
    urls = gateways.urls
    headers = {"Authorization": f"Bearer {token}"}
    held = {"model": "gpt-4", "messages": [{"role": "user", "content": "wait"}], "stream": True}

    def window() -> Any:
        state = gateways.run(gateways.admin.rate_windows(key_id, project, gateways.clock.epoch))
        return state.key

    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{urls[0]}/v1/chat/completions", json=held, headers=headers) as r,
    ):
        assert r.status_code == 200
        chunks = r.iter_raw()  # kept: dropping it would close the response
        next(chunks)
        bound = window().tokens
        assert window().parallel == 1
    deadline = time.monotonic() + 20  # settlement after the client left: bounded wait
    while window().parallel and time.monotonic() < deadline:
        time.sleep(0.05)
    left = window()
    assert (left.requests, left.parallel) == (1, 0)
    assert 0 < left.tokens < bound
    fail = {"model": "gpt-4", "messages": [{"role": "user", "content": "fail"}]}
    failed = httpx.post(f"{urls[-1]}/v1/chat/completions", json=fail, headers=headers, timeout=30)
    assert failed.status_code == 503
    after = window()
    assert (after.requests, after.tokens, after.parallel) == (2, left.tokens, 0)
    again = httpx.post(f"{urls[-1]}/v1/chat/completions", json=MOCK, headers=headers, timeout=30)
    assert again.status_code == 200, again.text
