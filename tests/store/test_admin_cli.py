"""The admin commands as a user runs them: `gateway … [--json]`, with the database from
the environment.

Most tests run the command in this process (`run_gateway_cli`: same argv, environment,
working directory, exit status and output); a fresh interpreter per command made this
file the suite's slowest (79 s). `test_commands_run_as_processes` runs both ways of
starting it as a process, `python -m proxy.cli` and the installed `gateway` script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from store_backends import Backend, backend_env, run_gateway_cli

REPO = Path(__file__).resolve().parents[2]


def gateway(backend: Backend, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_gateway_cli(backend_env(backend), tmp_path, *args)


def gateway_process(
    command: list[str], backend: Backend, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=backend_env(backend),
        timeout=60,
        check=False,
    )


def ok(backend: Backend, tmp_path: Path, *args: str) -> dict[str, Any]:
    done = gateway(backend, tmp_path, *args, "--json")
    assert done.returncode == 0, done.stderr
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


@pytest.fixture
def cli_backend(backend: Backend) -> Backend:
    return backend


def test_quickstart_key_on_a_fresh_database(cli_backend: Backend, tmp_path: Path) -> None:
    created = ok(cli_backend, tmp_path, "keys", "create", "--project", "default")
    assert created["token"].startswith("llmgtwy_")
    assert created["project"] == "default"
    assert created["status"] == "active"
    assert created["usage"] == "0.00"
    assert created["usage_limit"] is None
    shown = ok(cli_backend, tmp_path, "keys", "show", created["id"])
    assert "token" not in shown
    assert created["token"] not in json.dumps(shown)
    assert {k: shown[k] for k in ("id", "project", "status", "usage", "usage_limit")} == {
        "id": created["id"],
        "project": "default",
        "status": "active",
        "usage": "0.00",
        "usage_limit": None,
    }
    text = gateway(cli_backend, tmp_path, "keys", "create", "--project", "default")
    assert text.returncode == 0
    assert text.stdout.startswith("llmgtwy_")


def test_orgs_projects_and_key_lifecycle(cli_backend: Backend, tmp_path: Path) -> None:
    def run(*args: str) -> dict[str, Any]:
        return ok(cli_backend, tmp_path, *args)

    created = run("orgs", "create", "acme", "--credits", "25.50")
    assert created == {"id": "acme", "credits": "25.50", "name": ""}
    assert run("orgs", "credits", "acme", "3.00")["credits"] == "3.00"
    assert run("orgs", "rename", "acme", "Acme Inc")["name"] == "Acme Inc"
    listed_orgs = run("orgs", "list")["organizations"]
    assert ("acme", "Acme Inc") in [(o["id"], o["name"]) for o in listed_orgs]
    project = run("projects", "create", "web", "--org", "acme", "--mode", "credits")
    assert (project["organization"], project["mode"], project["status"]) == (
        "acme",
        "credits",
        "active",
    )
    assert run("projects", "set-mode", "web", "api-keys")["mode"] == "api-keys"
    assert run("projects", "rename", "web", "Website")["name"] == "Website"
    keyed = run("projects", "provider-key", "web", "openai", "--value", "sk-very-secret")
    assert keyed["provider_keys"] == {"openai": {"value": "***"}}
    keyed = run("projects", "provider-key", "web", "azure", "--env", "AZURE_KEY")
    assert keyed["provider_keys"]["azure"] == {"env": "AZURE_KEY"}
    key = run(
        "keys", "create", "--project", "web", "--usage-limit", "100.00", "--description", "ci"
    )
    assert (key["usage_limit"], key["description"]) == ("100.00", "ci")
    assert run("keys", "disable", key["id"])["status"] == "inactive"
    assert run("keys", "enable", key["id"])["status"] == "active"
    assert run("keys", "set-limit", key["id"], "none")["usage_limit"] is None
    assert run("keys", "set-limit", key["id"], "0.10")["usage_limit"] == "0.10"
    listed = run("keys", "list", "--project", "web")
    assert [k["id"] for k in listed["keys"]] == [key["id"]]
    assert run("keys", "delete", key["id"])["status"] == "deleted"
    assert run("projects", "archive", "web")["status"] == "deleted"


def test_iam_rules(cli_backend: Backend, tmp_path: Path) -> None:
    key = ok(cli_backend, tmp_path, "keys", "create", "--project", "default")
    added = gateway(cli_backend, tmp_path, "keys", "iam", "add", key["id"], "deny_models", "gpt-4*")
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.strip()
    assert rule_id.startswith("rule_")
    second = ok(
        cli_backend, tmp_path, "keys", "iam", "add", key["id"], "allow_providers", "mock", "openai"
    )
    listed = ok(cli_backend, tmp_path, "keys", "iam", "list", key["id"])
    assert [(r["id"], r["type"], r["values"]) for r in listed["rules"]] == [
        (rule_id, "deny_models", ["gpt-4*"]),
        (second["id"], "allow_providers", ["mock", "openai"]),
    ]
    removed = ok(cli_backend, tmp_path, "keys", "iam", "remove", key["id"], rule_id)
    assert removed == {"key_id": key["id"], "removed": rule_id}
    disabled = ok(cli_backend, tmp_path, "keys", "iam", "disable", key["id"], second["id"])
    assert (disabled["id"], disabled["status"]) == (second["id"], "inactive")
    renamed = ok(cli_backend, tmp_path, "keys", "rename", key["id"], "nightly batch")
    assert renamed["description"] == "nightly batch"
    listed = ok(cli_backend, tmp_path, "keys", "iam", "list", key["id"])
    assert [(r["id"], r["status"]) for r in listed["rules"]] == [(second["id"], "inactive")]
    project_rule = ok(
        cli_backend, tmp_path, "projects", "iam", "add", "default", "deny_providers", "openai"
    )
    assert (project_rule["project"], project_rule["values"]) == ("default", ["openai"])
    listed = ok(cli_backend, tmp_path, "projects", "iam", "list", "default")
    assert [r["id"] for r in listed["rules"]] == [project_rule["id"]]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("keys", "show", "key_missing"), 1, "key `key_missing` does not exist"),
        (("keys", "create", "--project", "nope"), 1, "project `nope` does not exist"),
        (("keys", "create", "--project", "default", "--usage-limit", "ten"), 1, "`ten`"),
        (("keys", "set-limit", "key_missing", "-1"), 1, "negative"),
        (("orgs", "credits", "ghost", "1"), 1, "organization `ghost` does not exist"),
        (("projects", "create", "p", "--org", "default", "--mode", "free"), 2, "invalid choice"),
        (("keys", "iam", "add", "k", "allow_colours", "red"), 2, "invalid choice"),
        (("keys",), 2, "required"),
    ],
)
def test_errors_exit_codes(tmp_path: Path, args: tuple[str, ...], code: int, needle: str) -> None:
    # Argument handling and error mapping do not depend on the backend: SQLite only.
    sqlite = Backend("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")
    done = gateway(sqlite, tmp_path, *args)
    assert done.returncode == code
    assert needle in done.stderr


def test_commands_run_as_processes(tmp_path: Path) -> None:
    """The console script and `python -m proxy.cli` start the same commands, with the
    exit statuses of success (0), a refused command (1) and bad arguments (2)."""
    sqlite = Backend("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")
    module = [sys.executable, "-m", "proxy.cli"]
    script = [str(Path(sys.executable).parent / "gateway")]
    created = gateway_process(module, sqlite, tmp_path, "keys", "create", "--project", "default")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("llmgtwy_")
    shown = gateway_process(script, sqlite, tmp_path, "keys", "list", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [k["project"] for k in json.loads(shown.stdout)["keys"]] == ["default"]
    missing = gateway_process(script, sqlite, tmp_path, "keys", "show", "key_missing")
    assert missing.returncode == 1
    assert "key `key_missing` does not exist" in missing.stderr
    usage = gateway_process(module, sqlite, tmp_path, "keys")
    assert usage.returncode == 2
    assert "required" in usage.stderr


def test_a_deleted_key_cannot_be_enabled(cli_backend: Backend, tmp_path: Path) -> None:
    key = ok(cli_backend, tmp_path, "keys", "create", "--project", "default")
    ok(cli_backend, tmp_path, "keys", "delete", key["id"])
    done = gateway(cli_backend, tmp_path, "keys", "enable", key["id"])
    assert done.returncode == 1
    assert f"key `{key['id']}` is deleted and cannot be re-enabled" in done.stderr
    assert ok(cli_backend, tmp_path, "keys", "show", key["id"])["status"] == "deleted"


def test_json_error_is_one_object(cli_backend: Backend, tmp_path: Path) -> None:
    done = gateway(cli_backend, tmp_path, "keys", "show", "key_missing", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "error": "key `key_missing` does not exist; list keys with `keys list`"
    }


def test_rate_limits_of_keys_and_projects(cli_backend: Backend, tmp_path: Path) -> None:
    ok(cli_backend, tmp_path, "projects", "create", "limited", "--org", "default", "--rpm", "100")
    created = ok(
        cli_backend,
        tmp_path,
        "keys",
        "create",
        "--project",
        "limited",
        "--rpm",
        "60",
        "--tpm",
        "100000",
        "--max-parallel",
        "4",
    )
    assert (created["rpm"], created["tpm"], created["max_parallel"]) == (60, 100000, 4)
    shown = ok(cli_backend, tmp_path, "keys", "show", created["id"])
    empty = {"requests": 0, "tokens": 0, "parallel": 0, "resets_in_seconds": None}
    assert shown["rate_window"] == empty
    assert shown["project_rate_window"] == empty
    # Options not given keep their value; `none` removes a ceiling.
    changed = ok(cli_backend, tmp_path, "keys", "set-rate-limits", created["id"], "--tpm", "none")
    assert (changed["rpm"], changed["tpm"], changed["max_parallel"]) == (60, None, 4)
    project = ok(
        cli_backend, tmp_path, "projects", "set-rate-limits", "limited", "--max-parallel", "8"
    )
    assert (project["rpm"], project["tpm"], project["max_parallel"]) == (100, None, 8)
    refused = gateway(cli_backend, tmp_path, "keys", "set-rate-limits", created["id"], "--rpm", "0")
    assert refused.returncode == 1
    assert "rpm: `0` is not a whole number from 1" in refused.stderr
    entries = ok(cli_backend, tmp_path, "audit", "list", "--object", f"key:{created['id']}")
    change = [e for e in entries["entries"] if e["action"] == "set_rate_limits"]
    assert change and change[0]["before"] == {"tpm": 100000} and change[0]["after"] == {"tpm": None}


def test_set_rate_limits_none_clears_them_and_nothing_given_is_an_error(
    cli_backend: Backend, tmp_path: Path
) -> None:
    """As `set-limit ID none` and `set-budget ID none` do, `set-rate-limits ID none`
    removes every ceiling; a call that changes nothing says what to give instead of
    printing the old limits as if set; a bad value names the option that was typed."""
    created = ok(
        cli_backend, tmp_path, "keys", "create", "--project", "default", "--rpm", "3", "--tpm", "9"
    )
    nothing = gateway(cli_backend, tmp_path, "keys", "set-rate-limits", created["id"])
    assert nothing.returncode == 1
    assert "give --rpm, --tpm or --max-parallel, or `none`" in nothing.stderr
    bad = gateway(cli_backend, tmp_path, "keys", "set-rate-limits", created["id"], "--rpm", "-1")
    assert "--rpm: `-1` is not a whole number from 1" in bad.stderr
    both = gateway(
        cli_backend, tmp_path, "keys", "set-rate-limits", created["id"], "none", "--rpm", "5"
    )
    assert both.returncode == 1 and "`none` removes every limit" in both.stderr
    cleared = ok(cli_backend, tmp_path, "keys", "set-rate-limits", created["id"], "none")
    assert (cleared["rpm"], cleared["tpm"], cleared["max_parallel"]) == (None, None, None)
    ok(cli_backend, tmp_path, "projects", "create", "capped", "--org", "default", "--rpm", "7")
    project = ok(cli_backend, tmp_path, "projects", "set-rate-limits", "capped", "none")
    assert (project["rpm"], project["tpm"], project["max_parallel"]) == (None, None, None)
