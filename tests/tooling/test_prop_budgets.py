"""`policy-engine prop` and the period-budget checks (issue 13 point 5): the key's and
the project's budget checks written with `>` for `>=` are caught with a window's usage
equal to its budget. (That
the shipped policy keeps every property, these included, is test_prop_command's.)"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

from tooling_helpers import CATALOG, GATEWAY_REGO, INPUT_SCHEMA, POLICIES, run_cli_in_fresh_process

# Checks 3b and 3c, each written out for its subject (gateway.rego says why).
INCLUSIVE = tuple(
    f"to_number(input.{subject}.period_budget.usage) >= "
    f"to_number(input.{subject}.period_budget.amount)"
    for subject in ("key", "project")
)


def _prop(folder: Path) -> tuple[int, str]:
    run = run_cli_in_fresh_process(
        [
            "prop",
            str(folder),
            "--input-schema",
            str(INPUT_SCHEMA),
            "--seed",
            "3",
            "--max-examples",
            "1000",
            "--database",
            str(folder / "db"),
        ]
    )
    return run.status, run.out


def test_a_budget_check_with_a_strict_comparison_is_caught(tmp_path: Path) -> None:
    text = GATEWAY_REGO.read_text(encoding="utf-8")
    for check in INCLUSIVE:
        assert text.count(check) == 1, "a budget check moved; update this test's substitution"
        text = text.replace(check, check.replace(">=", ">"))
    (tmp_path / "gateway.rego").write_text(text)
    shutil.copy(POLICIES / "gateway_props.rego", tmp_path)
    shutil.copy(CATALOG, tmp_path)
    status, out = _prop(tmp_path)
    assert status == 1
    assert "budget" in out.split("FAIL", 1)[1].split("\n", 1)[0]
    found = json.loads(out[out.index("{") : out.rindex("}") + 1])
    budgets = [
        subject["period_budget"]
        for subject in (found["input"]["key"], found["input"]["project"])
        if subject and subject.get("period_budget")
    ]
    assert any(Decimal(b["usage"]) == Decimal(b["amount"]) for b in budgets)
