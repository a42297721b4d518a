"""Every policy file in policies/ passes `policy-engine check` (the engine's own CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from policy_harness import POLICY_DIR

POLICY_FILES = sorted(
    p for p in POLICY_DIR.rglob("*") if p.is_file() and p.name.endswith((".rego", ".iam.yaml"))
)


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policy_engine", "check", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_policy_directory_passes_check() -> None:
    result = check(POLICY_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: str(p.relative_to(POLICY_DIR)))
def test_each_policy_file_passes_check_next_to_the_default_policy(path: Path) -> None:
    result = check(POLICY_DIR / "gateway.rego", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_reports_a_broken_yaml_policy_with_its_location(tmp_path: Path) -> None:
    broken = tmp_path / "broken.iam.yaml"
    broken.write_text(
        "rule_sets:\n  - applies_to: {key: k1}\n    rules:\n      - deny_model: [gpt-4]\n",
        encoding="utf-8",
    )
    result = check(broken)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"{broken}:4:9: yaml_policy_error: unknown field `deny_model`" in output
