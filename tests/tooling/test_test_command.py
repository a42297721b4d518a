"""`policy-engine test`: Rego and YAML tests, pass/fail lines, summary, coverage."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tooling_helpers import CATALOG, FIXTURES, GATEWAY_REGO, POLICIES, run_cli

from policy_engine.parser import parse_module
from policy_engine.tooling.coverage import coverage_of


def test_shipped_suite_passes_and_covers_every_rule_body_of_the_default_policy() -> None:
    result = run_cli(["test", str(POLICIES), "--coverage", "--format", "json"])
    report = json.loads(result.out)
    assert result.status == 0, result.out
    assert report["failed"] == 0
    assert report["passed"] >= 30
    files = report["coverage"]["files"]
    (gateway_key,) = [name for name in files if name.endswith("gateway.rego")]
    gateway = files[gateway_key]
    assert gateway["rule_bodies"]["not_covered"] == []
    assert gateway["rule_bodies"]["covered"] == gateway["rule_bodies"]["total"] > 50
    assert gateway["rule_bodies"]["percent"] == 100.0
    assert not any(name.endswith(("_test.rego", "_props.rego")) for name in files)


def test_pass_lines_name_file_line_and_the_summary_counts() -> None:
    result = run_cli(["test", str(POLICIES), "--run", "no_token"])
    assert result.status == 0
    lines = result.out.splitlines()
    assert re.fullmatch(
        r".*policies/gateway_test\.rego:\d+: "
        r"PASS data\.gateway_test\.test_no_token_is_401 \(.* ms\)",
        lines[0],
    )
    assert lines[-1] == "1 passed, 0 failed"


def test_a_failing_test_exits_1_and_names_the_statement_that_failed() -> None:
    result = run_cli(["test", str(FIXTURES / "failing")])
    assert result.status == 1
    test_file = FIXTURES / "failing" / "limits_test.rego"
    assert (
        f"{test_file}:9: FAIL data.fixtures.limits_test.test_at_the_limit_is_blocked" in result.out
    )
    assert f"{test_file}:10: failed: data.fixtures.limits.blocked with input as" in result.out
    assert result.out.count("PASS") == 2
    assert result.out.splitlines()[-1] == "2 passed, 1 failed"


def test_run_filters_by_regular_expression() -> None:
    result = run_cli(["test", str(FIXTURES / "failing"), "--run", "over_the_limit|from_data"])
    assert result.status == 0
    assert result.out.splitlines()[-1] == "2 passed, 0 failed"


def test_no_matching_test_is_a_failure() -> None:
    result = run_cli(["test", str(FIXTURES / "failing"), "--run", "nothing-matches-this"])
    assert result.status == 1
    assert "no tests found" in result.out


def test_coverage_marks_the_line_no_test_reaches() -> None:
    policy = FIXTURES / "coverage" / "discount.rego"
    text = run_cli(["test", str(FIXTURES / "coverage"), "--coverage"])
    assert text.status == 0
    assert f"{policy}: rule bodies 3/4 (75.0%)" in text.out
    assert (
        f"{policy}:18: rule body of data.fixtures.discount.free_shipping never evaluated"
        in text.out
    )
    assert "not covered lines: 18-19" in text.out
    as_json = json.loads(
        run_cli(["test", str(FIXTURES / "coverage"), "--coverage", "--format", "json"]).out
    )
    lines = as_json["coverage"]["files"][str(policy)]["lines"]
    assert lines["not_covered"] == [18, 19]
    assert {11, 15} <= set(lines["covered"])  # both discount bodies were evaluated


def test_coverage_counts_nothing_without_evaluations() -> None:
    module = parse_module("package p\n\nx if {\n\tinput.a\n}\n", "p.rego")
    (report,) = coverage_of([module], [])
    assert report.covered_lines == ()
    assert report.not_covered_lines == (3, 4)
    assert report.body_percent == 0.0


def test_yaml_cases_next_to_an_iam_policy_run_with_the_default_policy() -> None:
    result = run_cli(
        ["test", str(GATEWAY_REGO), str(FIXTURES / "iam"), "--data", f"catalog={CATALOG}"]
    )
    cases = FIXTURES / "iam" / "interns.iam_test.yaml"
    assert f"{cases}:12: PASS interns may use a small model" in result.out
    assert f"{cases}:14: PASS interns may not use gpt-4" in result.out
    assert f"{cases}:17: PASS other projects are not affected" in result.out
    wrong = FIXTURES / "iam" / "wrong.iam_test.yaml"
    assert f"{wrong}:11: FAIL expects gpt-4 to pass for interns" in result.out
    assert 'want {"allow":true}, got {"allow":false' in result.out
    assert result.out.splitlines()[-1] == "3 passed, 1 failed"
    assert result.status == 1


def test_broken_policy_is_reported_with_its_location(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "bad.rego").write_text("package bad\n\np if {\n", encoding="utf-8")
    result = run_cli(["test", str(folder)])
    assert result.status == 2
    assert "bad.rego:" in result.err


def test_a_yaml_test_file_can_be_named_directly() -> None:
    iam = FIXTURES / "iam"
    result = run_cli(
        [
            "test",
            str(GATEWAY_REGO),
            str(iam / "interns.iam.yaml"),
            str(iam / "interns.iam_test.yaml"),
            "--data",
            f"catalog={CATALOG}",
        ]
    )
    assert result.status == 0, result.out + result.err
    assert result.out.splitlines()[-1] == "3 passed, 0 failed"


def test_an_evaluation_error_is_reported_as_an_error_with_its_location() -> None:
    result = run_cli(["test", str(FIXTURES / "erroring")])
    test_file = FIXTURES / "erroring" / "conflict_test.rego"
    assert result.status == 1
    assert f"{test_file}:10: ERROR data.fixtures.conflict_test.test_answer_is_one" in result.out
    assert f"{test_file}:6:1: eval_conflict_error:" in result.out
    assert result.out.splitlines()[-1] == "0 passed, 1 failed"


def test_a_function_default_is_covered_only_when_it_answers() -> None:
    policy = FIXTURES / "coverage_functions" / "size.rego"
    result = run_cli(["test", str(policy.parent), "--coverage"])
    assert result.status == 0
    assert f"{policy}:6: rule body of data.fixtures.size.label never evaluated" in result.out
    assert "not covered lines: 6" in result.out


def test_coverage_without_policy_files_says_so(tmp_path: Path) -> None:
    (tmp_path / "only_test.rego").write_text(
        "package only_test\n\nimport rego.v1\n\ntest_true if true\n", encoding="utf-8"
    )
    result = run_cli(["test", str(tmp_path), "--coverage"])
    assert result.status == 0
    assert "coverage: no policy files besides the tests" in result.out


def test_print_output_is_shown_with_a_failing_test_and_time_is_defined(tmp_path: Path) -> None:
    (tmp_path / "p_test.rego").write_text(
        "package p_test\n\n"
        'test_fails if { print("seen", 42); false }\n\n'
        'test_passes if { print("hidden"); time.now_ns() > 0 }\n',
        encoding="utf-8",
    )
    result = run_cli(["test", str(tmp_path)])
    assert result.status == 1
    assert "    print: seen 42" in result.out.splitlines()
    assert "    print: hidden" in result.out.splitlines()  # under its PASS line
    assert result.out.splitlines()[-1] == "1 passed, 1 failed"
