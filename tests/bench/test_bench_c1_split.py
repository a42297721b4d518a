"""bench.c1_split reads Redis's command totals and turns two readings into per-request
figures."""

from __future__ import annotations

from bench.c1_split import CommandStat, command_deltas, parse_commandstats

_INFO = """# Commandstats
cmdstat_evalsha:calls=2000,usec=80000,usec_per_call=40.00,rejected_calls=0,failed_calls=0
cmdstat_hmget:calls=5000,usec=6000,usec_per_call=1.20,rejected_calls=0,failed_calls=0
cmdstat_client|setname:calls=3,usec=1,usec_per_call=0.33,rejected_calls=0,failed_calls=0
"""


def test_commandstats_are_read_with_subcommands() -> None:
    stats = parse_commandstats(_INFO)
    assert stats == {
        "evalsha": CommandStat(2000, 80000),
        "hmget": CommandStat(5000, 6000),
        "client|setname": CommandStat(3, 1),
    }


def test_deltas_are_per_request_and_drop_rare_commands() -> None:
    before = {"evalsha": CommandStat(1000, 38000), "hmget": CommandStat(2500, 3000)}
    after = parse_commandstats(_INFO)
    deltas = command_deltas(before, after, requests=500)
    # 1,000 script calls for 500 requests, 42 µs each; 2,500 HMGETs, 1.2 µs each; the
    # 3 CLIENT SETNAMEs (new since `before`) are under one per 100 requests.
    assert deltas == {"evalsha": (2.0, 42.0), "hmget": (5.0, 1.2)}
