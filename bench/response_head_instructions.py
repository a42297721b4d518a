"""Instructions to send one response head through uvicorn's httptools cycle and through
`proxy.response_head.ResponseHeadCycle`, counted by callgrind (not a test).

    .venv/bin/python -m bench.response_head_instructions

Each case runs in its own child under `valgrind --tool=callgrind
--toggle-collect=_operator_call`: 200 cycles warm up, then 2,000 fresh cycles each send
one `http.response.start` inside `operator.call`; the report is the counted
instructions over 2,000 (the `await` of each send included). Heads: a plain key's
reply (uvicorn's `date` and `server`, content-type, content-length) and a rate-limited
key's (the same and the six `x-ratelimit-*` lines). Needs valgrind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import operator
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.callgrind import operator_call_instructions  # noqa: E402 - needs the path above when run as a script

SENDS = 2000
WARMUP = 200
RATE_LINES = [
    (b"x-ratelimit-limit-requests", b"1000000000"),
    (b"x-ratelimit-remaining-requests", b"999999741"),
    (b"x-ratelimit-reset-requests", b"59s"),
    (b"x-ratelimit-limit-tokens", b"1000000000000"),
    (b"x-ratelimit-remaining-tokens", b"999999989640"),
    (b"x-ratelimit-reset-tokens", b"59s"),
]
REPLY_LINES = [(b"content-type", b"application/json"), (b"content-length", b"300")]


class _Transport:
    def write(self, data: bytes) -> None:
        pass


class _Flow:
    write_paused = False


def child(kind_name: str, head: str) -> None:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from proxy.response_head import ResponseHeadCycle

    kind = {"uvicorn": RequestResponseCycle, "ours": ResponseHeadCycle}[kind_name]
    lines = (RATE_LINES if head == "rate-limited" else []) + REPLY_LINES
    message = {"type": "http.response.start", "status": 200, "headers": lines}
    logger = logging.getLogger("bench.response_head")

    def cycle() -> Any:
        return kind(
            scope={"method": "POST"},  # type: ignore[typeddict-item]
            transport=_Transport(),  # type: ignore[arg-type]
            flow=_Flow(),  # type: ignore[arg-type]
            logger=logger,
            access_logger=logger,
            access_log=False,
            default_headers=[(b"date", b"Mon, 07 Dec 2026 13:00:00 GMT"), (b"server", b"uvicorn")],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=lambda: None,
        )

    cycles = [cycle() for _ in range(WARMUP + SENDS)]

    async def run(chosen: list[Any]) -> None:
        for each in chosen:
            await each.send(message)

    asyncio.run(run(cycles[:WARMUP]))
    gc.collect()
    gc.freeze()
    operator.call(lambda: asyncio.run(run(cycles[WARMUP:])))


def count(kind: str, head: str) -> float:
    return operator_call_instructions([__file__, "--child", kind, head]) / SENDS


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    print("| head | uvicorn's cycle | ResponseHeadCycle |")
    print("|---|---:|---:|")
    for head in ("plain", "rate-limited"):
        theirs, ours = count("uvicorn", head), count("ours", head)
        print(f"| {head} | {theirs:,.0f} | {ours:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
