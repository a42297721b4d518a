"""Instructions to build a rate-limited key's `x-ratelimit-*` header lines, counted by
callgrind (not a test).

    .venv/bin/python -m bench.rate_headers_instructions [--root TREE]

Each case runs in its own child under `valgrind --tool=callgrind
--toggle-collect=_operator_call`: 200 turns warm up, then 2,000 turns run inside
`operator.call`; the report is the counted instructions over 2,000. Cases:

- `headers`: `proxy.rate_headers.rate_headers(...)` alone;
- `reply`: the same, added to a reply (`gateway._with_headers`) and sent by
  `api_route._send_whole` to a `send` that does nothing, minus the same reply sent
  without them (what the rate lines add to a reply before uvicorn's cycle).

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
    from proxy.api_route import _send_whole
    from proxy.gateway import Reply, _with_headers
    from proxy.rate_headers import rate_headers

    args = _case(name)
    reply = Reply(status=200, body=b"{}" * 150, headers=(("x-request-id", "abc"),))

    async def send(message: Any) -> None:
        pass

    def drive(coroutine: Any) -> None:
        try:  # noqa: SIM105 (no context manager in the counted turns)
            coroutine.send(None)
        except StopIteration:
            pass

    def headers_turns(turns: int) -> None:
        for _ in range(turns):
            rate_headers(*args)

    def reply_turns(turns: int) -> None:
        for _ in range(turns):
            drive(_send_whole(_with_headers(reply, rate_headers(*args)), send))

    def bare_turns(turns: int) -> None:
        for _ in range(turns):
            drive(_send_whole(_with_headers(reply, ()), send))

    turns = {"headers": headers_turns, "reply": reply_turns, "bare": bare_turns}[what]
    turns(WARMUP)
    gc.collect()
    gc.freeze()
    operator.call(turns, TURNS)


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
    print("| windows | rate_headers | lines added to a sent reply |")
    print("|---|---:|---:|")
    for name in ("key", "both", "refused"):
        alone, sent = count(root, "headers", name), count(root, "reply", name)
        print(f"| {name} | {alone:,.0f} | {sent - bare:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
