"""Suite-wide pytest set-up: progress a person can follow.

The whole suite takes minutes; pytest's own progress is a percentage at the end of each
file's line of dots. Each of those now also says how long the run has taken and roughly
how long it has left (extrapolated from the share of tests done), so someone watching the
README's test command knows whether to wait or come back later.

Also the `shipped_policies` fixture: the shipped policy compiled once per session.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from shipped_policy import ShippedPolicies


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def progress_with_time(
    percentage_message: Callable[[], str], share_done: Callable[[], float], started: float
) -> Callable[[], str]:
    """Wrap pytest's ` [ 45%]` message into ` 2:10 elapsed, ~2:40 left [ 45%]`."""

    def message() -> str:
        elapsed = time.monotonic() - started
        done = share_done()
        if done >= 1.0:
            timing = f"{_clock(elapsed)} in all"
        elif done > 0.02:
            timing = f"{_clock(elapsed)} elapsed, ~{_clock(elapsed * (1 - done) / done)} left"
        else:
            timing = f"{_clock(elapsed)} elapsed"
        return f" {timing}{percentage_message()}"

    return message


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    # A private method of pytest's reporter (pytest is pinned): if it is ever renamed,
    # the suite keeps pytest's plain percentages rather than failing.
    original = getattr(reporter, "_get_progress_information_message", None)
    if reporter is None or original is None:
        return

    def share_done() -> float:
        collected = getattr(reporter, "_session", None)
        total = getattr(collected, "testscollected", 0) or 0
        reported = len(getattr(reporter, "_progress_nodeids_reported", ()))
        return reported / total if total else 0.0

    reporter._get_progress_information_message = progress_with_time(  # type: ignore[attr-defined]
        original, share_done, time.monotonic()
    )


@pytest.fixture(scope="session")
def shipped_policies() -> ShippedPolicies:
    return ShippedPolicies()
