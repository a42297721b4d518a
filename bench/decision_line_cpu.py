"""CPU time of one decision log line (`DecisionRecord.emit`) as `gateway serve` logs it.

    PYTHONPATH=<checkout> .venv/bin/python -m bench.decision_line_cpu [--lines 50000]

Logging configured as `serve` does (`proxy.cli.configure_logging`, the batched stderr
handler, here writing to /dev/null), plus the dashboard's feed handler when `--feed`;
each line is a full allowed request's record, emitted on a running event loop.
Prints the process CPU time per line (median of `--rounds`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from decimal import Decimal

from proxy.cli import configure_logging
from proxy.dashboard.decision_log import InMemoryDecisionLog
from proxy.dashboard.feed import DECISION_LOGGER, DecisionLineFeed
from proxy.decision_log import DecisionRecord

__all__ = ["main"]


def _one() -> None:
    record = DecisionRecord("chat.completions")
    record.key_id, record.client = "key_abcdef0123", "127.0.0.1"
    record.model, record.provider, record.allowed = "openai/gpt-4o", "openai", True
    record.policy_seconds, record.upstream_seconds = 0.0001234, 0.0004321
    record.prompt_tokens, record.completion_tokens = 12, 34
    record.cost = Decimal("0.000123")
    record.emit(200)


async def _per_line(lines: int) -> float:
    for _ in range(1000):
        _one()
    started = time.process_time()
    for _ in range(lines):
        _one()
    return (time.process_time() - started) / lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CPU time of one decision log line")
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--feed", action="store_true", help="also the dashboard's feed")
    args = parser.parse_args(argv)
    with open(os.devnull, "w") as sink:
        configure_logging("info")
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
        if args.feed:
            logging.getLogger(DECISION_LOGGER).addHandler(DecisionLineFeed(InMemoryDecisionLog()))
        seconds = [asyncio.run(_per_line(args.lines)) for _ in range(args.rounds)]
        logging.shutdown()
    where = os.environ.get("PYTHONPATH", "this checkout")
    rounds = ", ".join(f"{s * 1e6:.2f}" for s in seconds)
    print(
        f"{where}: {statistics.median(seconds) * 1e6:.2f} µs CPU per line (rounds {rounds})",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
