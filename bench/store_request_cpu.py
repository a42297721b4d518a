"""CPU per plain request in the SQLite store alone: `Admission.reserve` + `settle`.

    PYTHONPATH=<checkout> .venv/bin/python bench/store_request_cpu.py [N] [C]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \
        bench/store_request_cpu.py N 64     # run with two N, subtract: instructions

A key without limits billed to its organization's credits (what `bench.wrk_cpu`
sends), `C` (64) concurrent loops, `N` (6,000) requests in all, each admitted,
then settled one event-loop turn later. Prints the process CPU time per request
(the worker thread's checkpoints included). Under callgrind the difference of two
runs' instruction totals over the difference of their N is the instructions per
request, a figure other load on the machine does not move.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import uvloop

from proxy.admission import Admission
from proxy.store import open_store
from proxy.store.base import Claim, Reservation

COST = Decimal("0.000123")
BOUND = Decimal("0.0025")
WARM_UP = 200


async def _measure(path: Path, requests: int, concurrency: int) -> float:
    store = open_store(f"sqlite:///{path}", None)
    await store.migrate()
    await store.ensure_defaults()
    await store.set_credits("default", Decimal("1000000000"))
    key, _ = await store.create_key("default", None, "bench")
    admission = Admission(store)
    claim = Claim(key_id=key.id, organization_id="default", amount=BOUND, project_id="default")

    async def one() -> None:
        reservation = await admission.reserve(claim)
        assert isinstance(reservation, Reservation)
        await asyncio.sleep(0)
        await admission.settle(reservation, COST, tokens=10)

    try:
        for _ in range(WARM_UP):
            await one()
        each = requests // concurrency

        async def loop() -> None:
            for _ in range(each):
                await one()

        started = time.process_time()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return (time.process_time() - started) / (each * concurrency)
    finally:
        await store.close()


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    with tempfile.TemporaryDirectory() as tmp:
        seconds = uvloop.run(_measure(Path(tmp) / "bench.db", requests, concurrency))
    where = os.environ.get("PYTHONPATH", "this checkout")
    print(f"{where}: {seconds * 1e6:.1f} µs CPU per request at {concurrency} concurrent")


if __name__ == "__main__":
    main()
