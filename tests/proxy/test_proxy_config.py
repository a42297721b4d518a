"""Configuration: defaults, file, env overrides, and errors that name the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import ConfigError, GatewayConfig, ProviderConfig, load_config


def test_defaults_need_no_file() -> None:
    config = load_config(None, {})
    assert config.database == "sqlite:///./gateway.db"
    assert config.usage_store is None
    assert config.max_body_bytes == 4 * 1024 * 1024
    assert config.error_format == "documented"
    assert config.admin_token is None
    assert Path(config.policy_dir).name == "policies"
    assert config.catalog_path == str(Path(config.policy_dir) / "catalog.yaml")


def test_every_field_has_a_docstring() -> None:
    source = Path(sys.modules[GatewayConfig.__module__].__file__ or "").read_text()
    for name in GatewayConfig.__struct_fields__:
        block = source.split(f"    {name}:", 1)[1].split("\n", 2)
        assert block[1].strip().startswith('"""'), f"field {name} lacks a docstring"


def test_file_then_env_override(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "port: 5000\ndatabase: sqlite:///x.db\nproviders:\n"
        "  - {id: openai, base_url: 'http://up/v1', api_key_env: OPENAI_KEY}\n"
    )
    config = load_config(str(path), {"GATEWAY_DATABASE": "postgresql://db/test"})
    assert config.port == 5000
    assert config.database == "postgresql://db/test"
    assert config.providers == (
        ProviderConfig(id="openai", base_url="http://up/v1", api_key_env="OPENAI_KEY"),
    )


def test_env_scalars_and_lists_are_parsed() -> None:
    env = {
        "GATEWAY_PORT": "4100",
        "GATEWAY_ERROR_FORMAT": "openai",
        "GATEWAY_PROVIDERS": '[{"id": "x", "base_url": "http://x/v1"}]',
        "GATEWAY_ADMIN_TOKEN": "admin-secret",
        "GATEWAY_USAGE_STORE": "",
    }
    config = load_config(None, env)
    assert config.port == 4100
    assert config.error_format == "openai"
    assert config.providers[0].id == "x"
    assert config.admin_token == "admin-secret"
    assert config.usage_store is None


def test_config_path_from_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("host: 0.0.0.0\n")
    assert load_config(None, {"GATEWAY_CONFIG": str(path)}).host == "0.0.0.0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port: abc\n", "field `port`: Expected `int`, got `str`"),
        ("error_format: xml\n", "field `error_format`"),
        ("providers:\n  - {id: a, base_url: 3}\n", "field `providers[0].base_url`"),
        ("providers:\n  - {id: a}\n", "missing required field `base_url`"),
        ("nonsense: 1\n", "unknown field `nonsense`"),
        ("admin_token: x\n", "set the environment variable GATEWAY_ADMIN_TOKEN"),
        ("port: [\n", "is not valid YAML"),
        ("- 1\n", "must be a mapping"),
    ],
)
def test_bad_file_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable GATEWAY_PORT: field `port`"):
        load_config(None, {"GATEWAY_PORT": "eighty"})


def test_bad_time_zone_in_the_file_names_the_file_its_line_and_real_zones(
    tmp_path: Path,
) -> None:
    """It said only `invalid configuration: budget_time_zone: ...`, not where it was set."""
    path = tmp_path / "gateway.yaml"
    path.write_text("port: 4000\nbudget_time_zone: europe/berlin\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    message = str(info.value)
    assert message.startswith(f"config file {path} (line 2): field `budget_time_zone`: ")
    assert "`europe/berlin` is not an IANA time zone name" in message
    assert "did you mean `Europe/Berlin`?" in message
    assert "`UTC`, `Europe/Berlin`, `America/New_York`" in message
    assert "zoneinfo.available_timezones()" in message
    assert message.endswith("correct it in that file")
    assert "GATEWAY_BUDGET_TIME_ZONE" not in message


def test_bad_time_zone_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("budget_time_zone: Europe/Berlin\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {"GATEWAY_BUDGET_TIME_ZONE": "Mars/Olympus"})
    message = str(info.value)
    assert message.startswith(
        "environment variable GATEWAY_BUDGET_TIME_ZONE: field `budget_time_zone`: "
        "`Mars/Olympus` is not an IANA time zone name; "
    )
    assert "`Asia/Kolkata`" in message
    assert "set GATEWAY_BUDGET_TIME_ZONE to one, or unset it" in message
    assert str(path) not in message
    # The file's own (valid) zone is not the one blamed, and it is used once the
    # variable is gone.
    assert load_config(str(path), {}).budget_time_zone == "Europe/Berlin"


def test_cli_reports_where_a_bad_time_zone_came_from(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("budget_time_zone: Europe/Berln\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "keys", "list", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 2
    assert f"config file {path} (line 1): field `budget_time_zone`" in result.stderr
    assert "did you mean `Europe/Berlin`" in result.stderr


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(str(tmp_path / "absent.yaml"), {})


def test_cli_exits_2_on_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("port: nope\n")
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "field `port`" in result.stderr
    assert "listening" not in result.stderr
