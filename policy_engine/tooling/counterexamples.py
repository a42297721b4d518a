"""Saved counterexamples of `policy-engine prop`, replayed before any new search.

One directory per set of properties and input schema (the key), one JSON file
per failing input, named by its content hash, so a user can open, edit or
delete them. A saved input that no longer breaks anything is removed.

(Hypothesis's own example database is not used: it also keeps the targeted
search's Pareto front, which doubles the cost of every run.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from policy_engine.values import to_json_value

__all__ = ["CounterexampleStore"]


class CounterexampleStore:
    """Failing inputs under `directory/key/`; does nothing when `directory` is None."""

    def __init__(self, directory: str | Path | None, key: str) -> None:
        self._folder = Path(directory) / key if directory is not None else None

    def saved(self) -> Iterator[tuple[Path, Any]]:
        """(file, input document) for every saved counterexample, oldest name first."""
        if self._folder is None or not self._folder.is_dir():
            return
        for file in sorted(self._folder.glob("*.json")):
            try:
                yield file, json.loads(file.read_text(encoding="utf-8"), parse_float=Decimal)
            except (OSError, ValueError):
                continue  # a hand-edited file that no longer parses: skip it

    def save(self, document: Any) -> Path | None:
        if self._folder is None:
            return None
        data = msgspec.json.format(msgspec.json.encode(to_json_value(document)), indent=2)
        file = self._folder / f"{hashlib.sha256(data).hexdigest()[:16]}.json"
        self._folder.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data + b"\n")
        return file

    @staticmethod
    def forget(file: Path) -> None:
        file.unlink(missing_ok=True)
