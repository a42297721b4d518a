"""bench.controls_compare finds the controls the CLI offers from its help text."""

from __future__ import annotations

from bench.controls_compare import CONTROLS, offered_controls

HELP_NOW = """usage: gateway keys create [-h] [--config CONFIG] [--json] --project PROJECT
                           [--usage-limit USAGE_LIMIT]
                           [--description DESCRIPTION]
                           [--expires-at EXPIRES_AT]
"""

HELP_LATER = (
    HELP_NOW
    + """  --budget BUDGET  USD per period, e.g. 5.00/day
  --rpm RPM        requests per minute
  --tpm TPM
  --max-parallel MAX_PARALLEL
"""
)


def test_only_the_options_the_help_names_are_set() -> None:
    assert [c.option for c in offered_controls(HELP_NOW)] == ["--usage-limit", "--expires-at"]
    assert offered_controls(HELP_LATER) == list(CONTROLS)


def test_an_option_is_not_found_inside_another_word() -> None:
    assert offered_controls("--rpm-burst N  --budgets X") == []
