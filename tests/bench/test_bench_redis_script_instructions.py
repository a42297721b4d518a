"""bench.redis_script_instructions reads the instruction total of a callgrind dump."""

from __future__ import annotations

import pytest

from bench.redis_script_instructions import total_instructions


def test_the_total_is_read_from_the_summary_or_totals_line() -> None:
    dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=main\n16 5\nsummary: 123456\n"
    assert total_instructions(dump) == 123456
    assert total_instructions("events: Ir\ntotals: 42\n") == 42


def test_a_dump_without_totals_is_an_error() -> None:
    with pytest.raises(ValueError, match="no totals"):
        total_instructions("events: Ir\nfn=main\n16 5\n")
