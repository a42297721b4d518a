"""Reading py-spy's raw profile format into inclusive shares."""

from __future__ import annotations

from bench.profile_gateway import inclusive_shares, self_shares

RAW = """\
main (app.py:1);handle (gateway.py:10);decide (policy.py:5) 3
main (app.py:1);handle (gateway.py:12);write (store.py:7) 5
worker (thread.py:3);write (store.py:7);write (store.py:9) 2
"""


def test_inclusive_shares_count_a_function_once_per_stack() -> None:
    total, shares = inclusive_shares(RAW)
    assert total == 10
    by_name = {name: share for share, name in shares}
    assert by_name["main [app.py]"] == 0.8
    assert by_name["handle [gateway.py]"] == 0.8
    assert by_name["write [store.py]"] == 0.7  # recursion on one stack counts once
    assert by_name["decide [policy.py]"] == 0.3
    assert shares[0][0] == 0.8


def test_empty_profile() -> None:
    assert inclusive_shares("") == (0, [])


def test_self_shares_count_only_the_innermost_frame_with_its_line() -> None:
    total, shares = self_shares(RAW)
    assert total == 10
    assert shares == [
        (0.5, "write [store.py:7]"),
        (0.3, "decide [policy.py:5]"),
        (0.2, "write [store.py:9]"),
    ]
