"""The gateway passes each decision its own clock, seed and print logger (EvalOptions)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from proxy.policy import engine_loader

POLICY = """package gateway

decision := {
\t"now": time.now_ns(),
\t"same_now": time.now_ns() == time.now_ns(),
\t"draw": rand.intn("pick", 1000),
\t"printed": print("deciding for", input.key),
}
"""


def test_each_decision_reads_the_clock_once_and_prints_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "gateway.rego").write_text(POLICY, encoding="utf-8")
    decide = engine_loader(str(tmp_path), {})
    before = time.time_ns()
    with caplog.at_level(logging.INFO, logger="gateway.policy"):
        first = decide({"key": "k1"})
    second = decide({"key": "k2"})
    assert isinstance(first, dict) and isinstance(second, dict)
    assert before <= first["now"] <= second["now"] <= time.time_ns()
    assert first["same_now"] is True
    assert 0 <= first["draw"] < 1000
    assert first["printed"] is True
    assert "policy print: deciding for k1" in caplog.text
