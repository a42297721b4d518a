"""Added latency of `/v1/responses` and `/v1/messages`, measured as `bench.run` measures chat.

    python -m bench.agent_apis [--rounds N] [--ttft-rounds N]

One real `gateway serve` (SQLite ledger, default policy) pinned to the gateway core,
the instant mock upstream and this load generator on the load core. For each API
(chat as the reference, Responses through the `openai` provider, Messages through the
`anthropic` provider, all at the same mock) direct calls to the mock and calls through
the gateway are interleaved at concurrency 1, so both series see the same machine
noise; the difference of their percentiles is the added latency. Plain requests are
timed to the last byte, streams to the first byte (TTFT). Everything started is
stopped when it ends.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop

from bench.figures import AddedLatency, added_latency
from bench.gateway_setup import RunningGateway, start_gateway, start_mocks
from bench.loadgen import Endpoint, chat_body, interleaved
from bench.processes import LOAD_CORE, ProcessGroup, machine_description, pin_current_process

__all__ = ["main"]

_PROMPT = "Say hello to the benchmark please"
# api -> (path, model through the gateway, body without model and stream)
_APIS: dict[str, tuple[str, str, dict[str, object]]] = {
    "chat": ("/chat/completions", "openai/gpt-4o", {}),
    "responses": ("/responses", "openai/gpt-4o", {"input": _PROMPT, "max_output_tokens": 32}),
    "messages": (
        "/messages",
        "anthropic/claude-sonnet-4",
        {"max_tokens": 32, "messages": [{"role": "user", "content": _PROMPT}]},
    ),
}


def _body(api: str, model: str, stream: bool) -> bytes:
    if api == "chat":
        return chat_body(stream, model)
    body: dict[str, object] = {"model": model, **_APIS[api][2]}
    if stream:
        body["stream"] = True
    return msgspec.json.encode(body)


def _pair(api: str, instant: str, gateway: RunningGateway, stream: bool) -> list[Endpoint]:
    path, model, _ = _APIS[api]
    auth = [("Authorization", f"Bearer {gateway.token}")]
    if api == "messages":
        auth = [("x-api-key", gateway.token), ("anthropic-version", "2023-06-01")]
    return [
        Endpoint.post_json(instant + path, _body(api, model.split("/", 1)[1], stream)),
        Endpoint.post_json(f"{gateway.base_url}/v1{path}", _body(api, model, stream), auth),
    ]


async def _measure(
    instant: str, gateway: RunningGateway, rounds: int, ttft_rounds: int
) -> dict[str, tuple[AddedLatency, AddedLatency]]:
    figures: dict[str, tuple[AddedLatency, AddedLatency]] = {}
    for api in _APIS:
        plain = _pair(api, instant, gateway, stream=False)
        streamed = _pair(api, instant, gateway, stream=True)
        for endpoint in (plain[1], streamed[1]):
            [[sample]] = await interleaved([endpoint], 1)
            if sample.status != 200 or not sample.complete:
                raise RuntimeError(f"the gateway answered {sample.status} on {api}")
        await interleaved(plain, 50)  # warm connections, caches and pools
        c1 = await interleaved(plain, rounds)
        ttft = await interleaved(streamed, ttft_rounds)
        figures[api] = (
            added_latency(c1[0], c1[1], ttft=False),
            added_latency(ttft[0], ttft[1], ttft=True),
        )
    return figures


def _render(figures: dict[str, tuple[AddedLatency, AddedLatency]]) -> str:
    lines = [
        "| API | added p50 ms | added p99 ms | direct p50 ms | stream TTFT added p50 / p99 ms "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for api, (plain, ttft) in figures.items():
        lines.append(
            f"| {api} | {plain.added_p50_ms:.2f} | {plain.added_p99_ms:.2f} "
            f"| {plain.direct_p50_ms:.2f} | {ttft.added_p50_ms:.2f} / {ttft.added_p99_ms:.2f} "
            f"| {plain.errors + ttft.errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="added latency of /v1/responses, /v1/messages")
    parser.add_argument("--rounds", type=int, default=2000, help="plain requests per API")
    parser.add_argument("--ttft-rounds", type=int, default=300, help="streams per API")
    args = parser.parse_args(argv)
    pin_current_process(LOAD_CORE)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, ProcessGroup(Path(tmp)) as group:
        instant, paced = start_mocks(group)
        gateway = start_gateway(group, Path(tmp), "sqlite", instant, paced)
        figures = uvloop.run(_measure(instant, gateway, args.rounds, args.ttft_rounds))
    print(machine_description())
    print(_render(figures))
    print(
        f"(rounds {args.rounds}, stream rounds {args.ttft_rounds}; took "
        f"{time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
