"""Money typed with an exponent (`1e3`) is the plain amount on every surface: CLI text
and JSON, the admin API and the dashboard showed it back as `1E+3`; and amounts that
are not money (NaN, Infinity, negative) are refused naming the flag or field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_backends import Backend
from test_admin_cli import gateway, ok

from proxy.app import create_app
from proxy.config import GatewayConfig, default_policy_dir
from proxy.money import money_text, plain_digits

ADMIN = "admin-money-token"


@pytest.fixture
def sqlite(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'gateway.db'}")


def test_plain_digits_and_money_text_never_use_an_exponent() -> None:
    assert plain_digits(Decimal("1e3")) == Decimal(1000)
    assert str(plain_digits(Decimal("1e3"))) == "1000"
    assert str(plain_digits(Decimal("1.5E+2"))) == "150"
    assert str(plain_digits(Decimal("12.50"))) == "12.50"  # typed digits kept
    assert money_text(Decimal("1E+3")) == "1000"
    assert money_text(Decimal("1.2E-7")) == "0.00000012"
    assert money_text(Decimal("0E-8")) == "0.00000000"
    assert money_text(Decimal("-2.5E+1")) == "-25"


def test_cli_shows_an_exponent_amount_in_plain_digits(sqlite: Backend, tmp_path: Path) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default", "--usage-limit", "1e3")
    assert created["usage_limit"] == "1000"
    assert ok(sqlite, tmp_path, "keys", "show", created["id"])["usage_limit"] == "1000"
    listed = ok(sqlite, tmp_path, "keys", "list")["keys"]
    assert [k["usage_limit"] for k in listed] == ["1000"]
    text = gateway(sqlite, tmp_path, "keys", "show", created["id"]).stdout
    assert "limit 1000" in text and "E+" not in text
    changed = gateway(sqlite, tmp_path, "keys", "set-limit", created["id"], "2.5E+3")
    assert changed.returncode == 0, changed.stderr
    assert "limit 2500" in changed.stdout and "E+" not in changed.stdout

    org = ok(sqlite, tmp_path, "orgs", "create", "acme", "--credits", "1e2")
    assert org["credits"] == "100"
    assert ok(sqlite, tmp_path, "orgs", "credits", "acme", "5E+1")["credits"] == "50"
    text = gateway(sqlite, tmp_path, "orgs", "list").stdout
    assert "acme  credits 50" in text and "E+" not in text
    # The audit log keeps what was stored, in the same digits.
    entries = ok(sqlite, tmp_path, "audit", "list", "--object", created["id"])["entries"]
    assert "E+" not in json.dumps(entries)


@pytest.mark.parametrize("amount", ["NaN", "nan", "Infinity", "-Infinity", "sNaN", "-1", "-0.01"])
def test_cli_refuses_amounts_that_are_not_money_naming_the_flag(
    sqlite: Backend, tmp_path: Path, amount: str
) -> None:
    done = gateway(
        sqlite, tmp_path, "keys", "create", "--project", "default", f"--usage-limit={amount}"
    )
    assert done.returncode == 1
    assert f"--usage-limit: `{amount}`" in done.stderr
    done = gateway(sqlite, tmp_path, "orgs", "create", "acme", f"--credits={amount}")
    assert done.returncode == 1
    assert f"--credits: `{amount}`" in done.stderr
    assert ok(sqlite, tmp_path, "keys", "list")["keys"] == []


def test_cli_set_limit_refuses_nan_naming_the_argument(sqlite: Backend, tmp_path: Path) -> None:
    created = ok(sqlite, tmp_path, "keys", "create", "--project", "default")
    done = gateway(sqlite, tmp_path, "keys", "set-limit", created["id"], "Infinity")
    assert done.returncode == 1
    assert "limit: `Infinity` is not a finite amount" in done.stderr


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    from litestar.testing import TestClient

    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'api.db'}",
        policy_dir=default_policy_dir(),
        reload_interval=0.0,
        admin_token=ADMIN,
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        yield client  # type: ignore[misc]


def _admin(client: Any, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = client.request(
        method, f"/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == status, response.text
    return response.json()


def test_admin_api_answers_plain_digits(api: httpx.Client) -> None:
    key = _admin(api, "POST", "/keys", {"project": "default", "usage_limit": "1e3"}, 201)
    assert key["usage_limit"] == "1000"
    assert _admin(api, "GET", f"/keys/{key['id']}")["usage_limit"] == "1000"
    tiny = _admin(api, "PUT", f"/keys/{key['id']}/usage-limit", {"usage_limit": "1e-7"})
    assert tiny["usage_limit"] == "0.0000001"
    org = _admin(api, "POST", "/orgs", {"id": "acme", "credits": "1E+2"}, 201)
    assert org["credits"] == "100"
    for bad in ("NaN", "Infinity", "-1"):
        refused = _admin(api, "POST", "/keys", {"project": "default", "usage_limit": bad}, 400)
        assert "usage_limit" in refused["message"]
