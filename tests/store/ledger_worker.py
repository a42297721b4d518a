"""A separate gateway-like process for the multi-process ledger tests.

    python ledger_worker.py burst CONFIG_JSON   -> prints {"admitted": n}
    python ledger_worker.py hold CONFIG_JSON    -> settles some, holds the rest, prints
                                                   "ready" and sleeps until killed

CONFIG_JSON: {"database", "usage_store", "options", "key_id", "n", "cost", "start_at",
"settle"}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from decimal import Decimal
from typing import Any

from proxy.store import open_store


async def burst(config: dict[str, Any]) -> None:
    store = open_store(config["database"], config["usage_store"], **config["options"])
    await store.migrate()
    cost = Decimal(config["cost"])
    await asyncio.sleep(max(0.0, config["start_at"] - time.time()))

    async def one() -> bool:
        reservation = await store.reserve(config["key_id"], None, cost)
        if reservation is None:
            return False
        await asyncio.sleep(0)
        await store.settle(reservation, cost)
        return True

    results = await asyncio.gather(*(one() for _ in range(config["n"])))
    await store.close()
    print(json.dumps({"admitted": sum(results)}), flush=True)


async def hold(config: dict[str, Any]) -> None:
    store = open_store(config["database"], config["usage_store"], **config["options"])
    await store.migrate()
    cost = Decimal(config["cost"])
    held = []
    for index in range(config["n"]):
        reservation = await store.reserve(config["key_id"], None, cost)
        assert reservation is not None
        if index < config["settle"]:
            await store.settle(reservation, cost)
        else:
            held.append(reservation)
    print("ready", flush=True)
    await asyncio.sleep(3600)  # killed with SIGKILL long before


def main() -> None:
    command, raw = sys.argv[1], sys.argv[2]
    config = json.loads(raw)
    asyncio.run(burst(config) if command == "burst" else hold(config))


if __name__ == "__main__":
    main()
