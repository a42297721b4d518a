"""Instructions to build a rate-limited key's `x-ratelimit-*` header lines, counted by
callgrind (not a test).

    .venv/bin/python -m bench.rate_headers_instructions [--root TREE]

Each case runs in its own child under `valgrind --tool=callgrind
--toggle-collect=_operator_call`: 200 turns warm up, then 2,000 turns run inside
`operator.call`; the report is the counted instructions over 2,000. Cases:

- `headers`: `proxy.rate_headers.rate_lines(...)` alone (`rate_headers` in a tree
  before it);
- `reply`: the same, added to a reply (`gateway._with_rate_lines`, or `_with_headers`)
  and sent by `api_route._send_whole` through `gateway serve`'s response cycle
  (`ResponseHeadCycle`, the head written to a transport that drops it), minus the same
  reply sent without them (what the rate lines add to a reply, up to the head's bytes).

Windows: a key with `rpm` and `tpm` admitted (`key`), the key and its project both
with `rpm`/`tpm` (`both`), and the key refused for requests (`refused`). `--root`
imports `proxy` from another tree (a before/after comparison in one run).
Needs valgrind.
"""

from __future__ import annotations

import gc
import operator
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `bench` is importable from the tree
    sys.path.append(str(ROOT))
from bench.callgrind import operator_call_instructions  # noqa: E402

TURNS = 2000
WARMUP = 200
NOW = 1_796_648_400.0  # whole seconds, as the gateway's clock reads


def _case(name: str) -> tuple[Any, ...]:
    from proxy.store.base import NO_RATE_LIMITS, RateCount, RateLimits, RateState

    key_limits = RateLimits(rpm=600, tpm=1_000_000, max_parallel=8)
    key = RateCount(requests=41, tokens=10_360, parallel=3, oldest=NOW - 1, newest=NOW)
    if name == "key":
        return key_limits, NO_RATE_LIMITS, RateState(key=key), NOW, None, 0
    project_limits = RateLimits(rpm=6000, tpm=10_000_000)
    project = RateCount(requests=410, tokens=103_600, parallel=9, oldest=NOW - 2, newest=NOW)
    state = RateState(key=key, project=project)
    if name == "both":
        return key_limits, project_limits, state, NOW, None, 0
    return key_limits, project_limits, state, NOW, "rate_limit_requests", 300


def child(root: str, what: str, name: str) -> None:
    sys.path.insert(0, root)
    import proxy.gateway
    import proxy.rate_headers
    from proxy.api_route import _send_whole
    from proxy.gateway import Reply

    args = _case(name)
    reply = Reply(status=200, body=b"{}" * 150, headers=(("x-request-id", "abc"),))
    if hasattr(proxy.rate_headers, "rate_lines"):  # rendered lines (this tree)
        build: Any = proxy.rate_headers.rate_lines
        add: Any = getattr(proxy.gateway, "_with_rate_lines")  # noqa: B009 - absent in older trees
        nothing: Any = b""
    else:  # (name, value) pairs (a tree before `rate_lines`)
        build, add, nothing = proxy.rate_headers.rate_headers, proxy.gateway._with_headers, ()
    cycles = iter([_cycle() for _ in range(WARMUP + TURNS)])

    def drive(coroutine: Any) -> None:
        try:  # noqa: SIM105 (no context manager in the counted turns)
            coroutine.send(None)
        except StopIteration:
            pass

    def headers_turns(turns: int) -> None:
        for _ in range(turns):
            build(*args)

    def reply_turns(turns: int) -> None:
        for _ in range(turns):
            drive(_send_whole(add(reply, build(*args)), next(cycles).send))

    def bare_turns(turns: int) -> None:
        for _ in range(turns):
            drive(_send_whole(add(reply, nothing), next(cycles).send))

    turns = {"headers": headers_turns, "reply": reply_turns, "bare": bare_turns}[what]
    turns(WARMUP)
    gc.collect()
    gc.freeze()
    operator.call(turns, TURNS)


class _Transport:
    def writelines(self, parts: Any) -> None:
        pass


class _Flow:
    write_paused = False


def _cycle() -> Any:
    """`gateway serve`'s response cycle on a transport that drops what it is given."""
    import asyncio
    import logging

    from proxy.response_head import ResponseHeadCycle

    logger = logging.getLogger("bench.rate_headers")
    return ResponseHeadCycle(
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


def count(root: str, what: str, name: str) -> float:
    return operator_call_instructions([__file__, "--child", root, what, name]) / TURNS


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    root = str(ROOT)
    if len(sys.argv) == 3 and sys.argv[1] == "--root":
        root = str(Path(sys.argv[2]).resolve())
    bare = count(root, "bare", "key")
    print(f"tree {root}; a reply without rate lines: {bare:,.0f} instructions")
    print("| windows | build the lines | lines added to a sent reply, head included |")
    print("|---|---:|---:|")
    for name in ("key", "both", "refused"):
        alone, sent = count(root, "headers", name), count(root, "reply", name)
        print(f"| {name} | {alone:,.0f} | {sent - bare:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
