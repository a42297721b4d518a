"""Which pages each SQLite commit of a request writes: the WAL's frames, by table and index.

    PYTHONPATH=<checkout> .venv/bin/python -m bench.wal_pages [--requests 50] [--key plain]

Runs the store alone at one request at a time (`Admission.reserve`, then `settle`, as
`bench.store_request_cpu` does) on a fresh SQLite file, and after each of the two calls
reads the frame headers the WAL gained (each frame is one page a commit changed: two
`pwrite64` and a checksum of the page) and names each page's table or index with the
`dbstat` virtual table. Prints the pages per call, averaged over `--requests` requests
after a warm-up, with the b-tree each belongs to. A frame with a commit size marks the
end of a transaction (counted under `commits`).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import struct
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path

import uvloop

from bench.store_request_cpu import BOUND, COST, KEYS, _claim
from proxy.admission import Admission
from proxy.store import open_store
from proxy.store.base import Reservation

__all__ = ["WalReader", "main"]

_WAL_HEADER = 32
_FRAME_HEADER = 24
WARM_UP = 20


class WalReader:
    """Reads the frames appended to a WAL file since the last call."""

    def __init__(self, db: Path) -> None:
        self._wal = Path(f"{db}-wal")
        self._salts = b""
        self._offset = _WAL_HEADER

    def new_frames(self) -> list[tuple[int, int]]:
        """(page number, commit size) of each frame appended since the last call."""
        data = self._wal.read_bytes()
        if len(data) < _WAL_HEADER:
            return []
        page_size = struct.unpack(">I", data[8:12])[0]
        salts = data[16:24]
        if salts != self._salts:  # the WAL started over
            self._salts, self._offset = salts, _WAL_HEADER
        frames = []
        while self._offset + _FRAME_HEADER + page_size <= len(data):
            page, commit = struct.unpack(">II", data[self._offset : self._offset + 8])
            if data[self._offset + 8 : self._offset + 16] != salts:
                break  # an old frame of a WAL that started over
            frames.append((page, commit))
            self._offset += _FRAME_HEADER + page_size
        return frames


def _page_names(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(db)
    try:
        return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    finally:
        conn.close()


async def _run(db: Path, requests: int, kind: str) -> dict[str, Counter[str]]:
    store = open_store(f"sqlite:///{db}", None)
    seen: dict[str, Counter[str]] = {"reserve": Counter(), "settle": Counter()}
    try:
        await store.migrate()
        await store.ensure_defaults()
        await store.set_credits("default", Decimal("1000000000"))
        limit = None if kind == "plain" else BOUND * 10**12
        key, _ = await store.create_key("default", limit, "bench")
        admission = Admission(store)
        claim = _claim(key.id, kind)
        reader = WalReader(db)
        for i in range(WARM_UP + requests):
            reader.new_frames()
            reservation = await admission.reserve(claim)
            assert isinstance(reservation, Reservation)
            reserved = reader.new_frames()
            await asyncio.sleep(0)
            await admission.settle(reservation, COST, tokens=10)
            settled = reader.new_frames()
            if i < WARM_UP:
                continue
            names = _page_names(db)
            for call, frames in (("reserve", reserved), ("settle", settled)):
                for page, commit in frames:
                    seen[call][names.get(page, f"page {page}")] += 1
                    if commit:
                        seen[call]["(commits)"] += 1
    finally:
        await store.close()
    return seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="WAL pages a request's commits write")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--key", choices=KEYS, default="plain")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        seen = uvloop.run(_run(Path(tmp) / "bench.db", args.requests, args.key))
    total = 0.0
    for call, counts in seen.items():
        pages = sum(n for name, n in counts.items() if name != "(commits)") / args.requests
        total += pages
        print(f"{call}: {pages:.2f} pages a request")
        for name, n in counts.most_common():
            print(f"    {name:32s} {n / args.requests:6.2f}")
    print(f"request: {total:.2f} pages ({2 * total:.1f} pwrite64 for the frames)")


if __name__ == "__main__":
    main()
