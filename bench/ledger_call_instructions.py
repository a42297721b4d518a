"""The gateway's own instructions for the Redis ledger's part of a request (admit and
settle), counted by callgrind without Redis (not a test).

    .venv/bin/python -m bench.ledger_call_instructions [--root TREE] [--key plain|controls]

`RedisLedgerStore.admit` then `settle` of one claim (the claims of
`bench/store_request_cpu.py`), as a request at one request at a time makes them: each
call goes through the ledger's own connection (`proxy.store.resp`), whose transport
answers every command at once with the script's reply (`ok`, or for the controlled key
the rate windows), fed back through the connection's reply parser; an event-loop turn
follows each request. No server runs: what is counted is the Python work around the two
calls (arguments, encoding, futures, reply parsing and dispatch, the loop's turns), which
`bench/store_request_cpu.py` counts only together with the flushes and refreshes its
clock sets off, so that its figure at one request at a time moves by several thousand
instructions between runs.

The child runs under `valgrind --tool=callgrind --toggle-collect=_operator_call`: 200
requests warm up, then 2,000 run inside `operator.call`; the report is the counted
instructions over 2,000. `--root` imports `proxy` from another tree (a before/after
comparison in one run). Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `bench` is importable from the tree
    sys.path.append(str(ROOT))
from bench.callgrind import operator_call_instructions  # noqa: E402

TURNS = 2000
WARMUP = 200
COST = Decimal("0.000123")
# ADMIT's reply for the controlled key: admitted, then both subjects' windows.
_RATED_OK = b"ok\t1,60,1,1796648400.0,1796648400.0\t-"


class _Transport:
    """Answers every write at once: one reply per command written."""

    def __init__(self, protocol: Any, reply: bytes) -> None:
        self._protocol = protocol
        self._reply = b"$%d\r\n%s\r\n" % (len(reply), reply)

    def write(self, data: bytes) -> None:
        self._protocol.data_received(self._reply * data.count(b"*", 0, 1))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Flusher:
    """Stands for the running flusher task (`_start_flusher` sees one)."""

    def done(self) -> bool:
        return False


def child(root: str, key: str) -> None:
    sys.path.insert(0, root)
    import uvloop

    from proxy.store import resp
    from proxy.store.base import BudgetWindow, Claim, RateLimits
    from proxy.store.redis_ledger import RedisLedgerStore

    store = RedisLedgerStore(
        "postgresql://127.0.0.1:1/none", "redis://127.0.0.1:1/0", redis_prefix="bench:"
    )
    store._flusher = _Flusher()  # type: ignore[assignment]
    if key == "plain":
        claim = Claim(key_id="key_1", organization_id="default", amount=Decimal("0.0025"))
        admit_reply = b"ok"
    else:
        high = 10**9
        claim = Claim(
            key_id="key_1",
            organization_id="default",
            amount=Decimal("0.0025"),
            project_id="default",
            key_budget=BudgetWindow(amount=Decimal(high), start="2026-12-07T00:00:00Z"),
            key_limits=RateLimits(rpm=high, tpm=high, max_parallel=high),
            tokens=60,
            now=1_796_648_400.0,
        )
        admit_reply = _RATED_OK
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)

    async def requests(count: int) -> None:
        protocol = resp._Protocol()
        transport = _Transport(protocol, admit_reply)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        connection = resp.RespConnection.__new__(resp.RespConnection)
        connection._protocol = protocol
        connection.loop = loop  # (a tree before it ignores it)
        store._batch._connection = connection
        settle_transport = _Transport(protocol, b"ok")
        for n in range(count):
            protocol.transport = transport  # type: ignore[assignment]
            outcome = await store.admit(claim, f"tkt_{n}")
            reservation = outcome.reservation  # type: ignore[union-attr]
            protocol.transport = settle_transport  # type: ignore[assignment]
            await store.settle(reservation, COST, tokens=10)
            await asyncio.sleep(0)  # the loop turns between requests

    loop.run_until_complete(requests(WARMUP))
    gc.collect()
    gc.freeze()
    operator.call(loop.run_until_complete, requests(TURNS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT), help="the tree whose proxy is counted")
    parser.add_argument("--key", choices=("plain", "controls"), default="plain")
    args = parser.parse_args()
    total = operator_call_instructions(
        [__file__, "--child", str(Path(args.root).resolve()), args.key]
    )
    print(f"{args.root} [{args.key} key]: {total / TURNS:,.0f} instructions a request")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
