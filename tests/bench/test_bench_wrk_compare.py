"""bench.wrk_compare reads wrk's `--latency` report (units, errors) correctly."""

from __future__ import annotations

import pytest

from bench.wrk_compare import WrkFigures, parse_wrk
from bench.wrk_cpu import completed_requests

REPORT = """Running 10s test @ http://127.0.0.1:4000/v1/chat/completions
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    27.51ms   10.02ms 246.01ms   90.00%
    Req/Sec     2.33k   100.00     2.50k    70.00%
  Latency Distribution
     50%  850.00us
     75%   28.00ms
     90%   33.00ms
     99%    1.20s
  23300 requests in 10.00s, 9.99MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   2330.12
Transfer/sec:      1.00MB
"""


def test_percentiles_in_any_unit_and_every_failure_counted() -> None:
    assert parse_wrk(REPORT) == WrkFigures(2330.12, 0.85, 1200.0, 12)


def test_a_report_without_figures_is_an_error() -> None:
    with pytest.raises(ValueError, match="no figures"):
        parse_wrk("unable to connect to 127.0.0.1:4000 Connection refused\n")


def test_a_percentile_in_seconds_with_wrk_s_trailing_space() -> None:
    # wrk pads a value in seconds ("1.08s ") to the width of "ms"/"us" values.
    report = REPORT.replace("     99%    1.20s\n", "     99%    1.08s \n")
    assert "1.08s \n" in report
    assert parse_wrk(report).p99_ms == 1080.0


def test_the_cpu_harness_counts_every_completed_request() -> None:
    assert completed_requests(REPORT) == 23300


def test_a_report_without_a_request_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="no request count"):
        completed_requests("unable to connect to 127.0.0.1:4000 Connection refused\n")
