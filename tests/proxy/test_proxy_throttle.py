"""Failed admin-token attempts per address: after `limit` failures in the window the
address waits; success clears it; memory stays bounded."""

from __future__ import annotations

import pytest

from proxy.throttle import FailedAttempts


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_after_the_limit_until_its_oldest_failure_ages_out() -> None:
    clock = FakeClock()
    attempts = FailedAttempts(limit=3, window_s=60.0, clock=clock)
    for _ in range(2):
        attempts.failed("10.0.0.1")
        clock.now += 10
    assert attempts.retry_after("10.0.0.1") is None  # two failures: may try again
    attempts.failed("10.0.0.1")
    # The first failure was at 1000; it leaves the window at 1060, now is 1020.
    assert attempts.retry_after("10.0.0.1") == 40
    assert attempts.retry_after("10.0.0.2") is None  # other addresses are not affected
    clock.now = 1060.5
    assert attempts.retry_after("10.0.0.1") is None


def test_a_success_clears_the_address() -> None:
    attempts = FailedAttempts(limit=2, window_s=60.0, clock=FakeClock())
    attempts.failed("a")
    attempts.succeeded("a")
    attempts.failed("a")
    assert attempts.retry_after("a") is None


def test_at_most_max_clients_addresses_are_remembered() -> None:
    clock = FakeClock()
    attempts = FailedAttempts(limit=1, window_s=60.0, max_clients=2, clock=clock)
    for address in ("a", "b", "c"):
        attempts.failed(address)
    assert attempts.retry_after("a") is None  # the least recently failed is forgotten
    assert attempts.retry_after("b") == 60
    assert attempts.retry_after("c") == 60


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        FailedAttempts(limit=0)
