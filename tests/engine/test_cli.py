"""`policy-engine check` and `eval` through `policy_engine.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_engine.cli import main

POLICY = """package demo
import rego.v1

default allow := false

allow if input.user == "admin"

limit := data.limits.rpm
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "demo.rego").write_text(POLICY, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a policy", encoding="utf-8")
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "broken.rego").write_text("package broken\np :=", encoding="utf-8")
    return tmp_path


def test_check_accepts_valid_policies(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Directories are read non-recursively, so the broken nested file is not loaded.
    assert main(["check", str(policy_dir)]) == 0
    assert capsys.readouterr().out == "ok: 2 rules\n"


def test_check_reports_errors_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.rego"
    bad.write_text("package bad\n\np := [1,\nq := nosuch(1)\n", encoding="utf-8")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:3: rego_parse_error:" in err
    assert "q := nosuch(1)\n  ^" in err


def test_eval_prints_json_results(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "input.json").write_text('{"user": "admin"}', encoding="utf-8")
    (tmp_path / "data.yaml").write_text("limits: {rpm: 1.5}\n", encoding="utf-8")
    query = "[data.demo.allow, data.demo.limit] = x"
    status = main([
        "eval", "-d", str(policy_dir / "demo.rego"), "-i", str(tmp_path / "input.json"),
        "--data", str(tmp_path / "data.yaml"), "--format", "json", query,
    ])  # fmt: skip
    assert status == 0
    assert json.loads(capsys.readouterr().out) == [{"x": [True, 1.5]}]


def test_eval_undefined_is_empty(policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "eval",
                "-d",
                str(policy_dir / "demo.rego"),
                "--format",
                "pretty",
                "data.demo.limit = x",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == []


def test_eval_reports_evaluation_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.rego").write_text("package c\np := 1\np := 2\n", encoding="utf-8")
    assert main(["eval", "-d", str(tmp_path), "data.c.p = x"]) == 1
    assert "eval_conflict_error" in capsys.readouterr().err


REPO = Path(__file__).resolve().parents[2]


def test_eval_of_a_term_prints_its_value(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # OPA's `eval data.p`: the value itself, not `[{}]`.
    status = main(["eval", "-d", str(policy_dir / "demo.rego"), "data.demo.allow"])
    assert status == 0
    assert capsys.readouterr().out == "false\n"


def test_eval_of_an_undefined_term_says_so(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "-d", str(policy_dir / "demo.rego"), "data.demo.limit"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "undefined" in captured.err


def test_eval_places_name_equals_file_data_under_the_name(
    policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "limits.yaml").write_text("rpm: 7\n", encoding="utf-8")
    status = main([
        "eval", "-d", str(policy_dir / "demo.rego"),
        "--data", f"limits={tmp_path / 'limits.yaml'}", "data.demo.limit",
    ])  # fmt: skip
    assert status == 0
    assert capsys.readouterr().out == "7\n"


def test_eval_decides_like_eval_explain_with_the_catalog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The catalog beside the policies is data.catalog with and without --explain.
    request = str(REPO / "tests" / "fixtures" / "allowed_request.json")
    policies = str(REPO / "policies")
    assert main(["eval", "-d", policies, "-i", request, "data.gateway.decision"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["allow"] is True
    assert (
        main(["eval", "-d", policies, "-i", request, "--explain", "notes", "data.gateway.decision"])
        == 0
    )
    assert "allowed: status 200" in capsys.readouterr().out


def test_eval_reads_the_clock_and_shows_print_output_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "w.rego").write_text(
        'package w\n\nnow := time.now_ns()\n\nx := 1 if print("x is", 1, input.absent)\n',
        encoding="utf-8",
    )
    assert main(["eval", "-d", str(tmp_path), "data.w.now > 1700000000000000000"]) == 0
    assert capsys.readouterr().out == "true\n"
    assert main(["eval", "-d", str(tmp_path), "data.w.x"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "1\n"
    assert captured.err == "x is 1 <undefined>\n"  # once, although eval asks twice
