"""Every row of the contract's §3 table, for /v1/chat/completions and /v1/models,
through both `Authorization: Bearer` and `x-api-key`, against the real server."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
import yaml
from proxy_deployment import UPSTREAM_KEY, Deployment
from proxy_helpers import (
    MSG_ARCHIVED,
    MSG_INVALID,
    MSG_LIMIT,
    MSG_NO_KEY,
    auth,
    chat,
    documented,
    make_tenant,
)

from proxy.config import default_policy_dir
from proxy.tokens import generate_token

STYLES = ["bearer", "x-api-key"]


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Any:
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        yield http


def _catalog() -> dict[str, Any]:
    with open(f"{default_policy_dir()}/catalog.yaml") as handle:
        catalog: dict[str, Any] = yaml.safe_load(handle)
    return catalog


def _assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == documented(status, message)


# -- checks 1-3: authentication ----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"x-api-key": ""}, {"Authorization": "Basic x"}],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models"])
def test_1_no_token(client: httpx.Client, headers: dict[str, str], path: str) -> None:
    if path == "/v1/models":
        response = client.get(path, headers=headers)
    else:
        response = client.post(path, json=chat(), headers=headers)
    _assert_error(response, 401, MSG_NO_KEY)


def _call(client: httpx.Client, path: str, token: str, style: str, **body: Any) -> httpx.Response:
    if path == "/v1/models":
        return client.get(path, headers=auth(token, style))
    return client.post(path, json=chat(**body), headers=auth(token, style))


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models"])
def test_2_unknown_inactive_deleted(
    deployment: Deployment, client: httpx.Client, style: str, path: str
) -> None:
    _assert_error(_call(client, path, generate_token(), style), 401, MSG_INVALID)
    tenant = make_tenant(deployment.admin)
    store = deployment.admin.store
    deployment.admin(store.set_key_status(tenant.key.id, "inactive"))
    _assert_error(_call(client, path, tenant.token, style), 401, MSG_INVALID)
    deployment.admin(store.set_key_status(tenant.key.id, "deleted"))
    _assert_error(_call(client, path, tenant.token, style), 401, MSG_INVALID)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models"])
def test_3_usage_limit(deployment: Deployment, client: httpx.Client, style: str, path: str) -> None:
    zero = make_tenant(deployment.admin, usage_limit="0")
    _assert_error(_call(client, path, zero.token, style), 401, MSG_LIMIT)
    # Spend something, then set the limit to exactly what was spent: usage >= limit.
    spent = make_tenant(deployment.admin)
    assert _call(client, "/v1/chat/completions", spent.token, style).status_code == 200
    usage = deployment.admin(deployment.admin.store.get_key(spent.key.id)).usage
    assert usage > 0
    deployment.admin(deployment.admin.store.set_usage_limit(spent.key.id, usage))
    _assert_error(_call(client, path, spent.token, style), 401, MSG_LIMIT)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models"])
def test_4_archived_project(
    deployment: Deployment, client: httpx.Client, style: str, path: str
) -> None:
    tenant = make_tenant(deployment.admin)
    deployment.admin(deployment.admin.store.archive_project(tenant.project_id))
    _assert_error(_call(client, path, tenant.token, style), 410, MSG_ARCHIVED)


def test_authentication_precedes_validation(deployment: Deployment, client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", content=b"{not json")
    _assert_error(response, 401, MSG_NO_KEY)
    archived = make_tenant(deployment.admin)
    deployment.admin(deployment.admin.store.archive_project(archived.project_id))
    response = client.post(
        "/v1/chat/completions", content=b"{not json", headers=auth(archived.token, "bearer")
    )
    _assert_error(response, 410, MSG_ARCHIVED)


# -- checks 5-8: the request ------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"{not json",
            "Invalid request body: not valid JSON (JSON is malformed: object keys must be strings "
            "(byte 1))",
        ),
        (b"[1, 2]", "Invalid request body: expected a JSON object"),
        (
            b'{"messages": [{"role": "user", "content": "hi"}]}',
            "Invalid request body: object missing required field `model`",
        ),
        (
            b'{"model": 4, "messages": []}',
            "Invalid request body: field `model`: expected `str`, got `int`",
        ),
        (
            b'{"model": "gpt-4", "messages": "hi"}',
            "Invalid request body: field `messages`: expected `array`, got `str`",
        ),
    ],
)
def test_5_bad_body(
    deployment: Deployment, client: httpx.Client, style: str, content: bytes, message: str
) -> None:
    tenant = make_tenant(deployment.admin)
    response = client.post(
        "/v1/chat/completions",
        content=content,
        headers={**auth(tenant.token, style), "Content-Type": "application/json"},
    )
    _assert_error(response, 400, message)
    assert deployment.admin(deployment.admin.store.get_key(tenant.key.id)).usage == 0


@pytest.mark.parametrize("style", STYLES)
def test_6_unsupported_model(deployment: Deployment, client: httpx.Client, style: str) -> None:
    tenant = make_tenant(deployment.admin)
    response = _call(client, "/v1/chat/completions", tenant.token, style, model="gpt-17")
    _assert_error(response, 400, "Unsupported model: gpt-17")


IAM_CASES = [
    ((("deny_models", ("gpt-4",)),), "gpt-4", "Model gpt-4 is in the denied models list"),
    ((("allow_models", ("claude-*",)),), "gpt-4", "Model gpt-4 is not in the allowed models list"),
    (
        (("deny_operations", ("chat.completions",)),),
        "gpt-4",
        "Operation chat.completions is in the denied operations list",
    ),
    (
        (("allow_operations", ("embeddings",)),),
        "gpt-4",
        "Operation chat.completions is not in the allowed operations list",
    ),
    (
        (("allow_providers", ("openai",)),),
        "openrouter/gpt-4",
        "Provider openrouter is not in the allowed providers list",
    ),
    (
        (("deny_providers", ("openrouter",)),),
        "openrouter/gpt-4",
        "Provider openrouter is in the denied providers list",
    ),
    (
        (("allow_providers", ("anthropic",)),),
        "gpt-4",
        "No providers are allowed for model gpt-4 after applying IAM rules.",
    ),
]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("rules", "model", "reason"), IAM_CASES)
def test_7_iam_denies(
    deployment: Deployment,
    client: httpx.Client,
    style: str,
    rules: Any,
    model: str,
    reason: str,
) -> None:
    tenant = make_tenant(deployment.admin, rules=rules)
    response = _call(client, "/v1/chat/completions", tenant.token, style, model=model)
    _assert_error(response, 403, f"Access denied: {reason}")


@pytest.mark.parametrize("style", STYLES)
def test_8_no_usable_credential(deployment: Deployment, client: httpx.Client, style: str) -> None:
    api_keys = make_tenant(deployment.admin, mode="api-keys")
    _assert_error(
        _call(client, "/v1/chat/completions", api_keys.token, style, model="gpt-4"),
        400,
        "No provider key set for any of the providers that support model gpt-4. Please add the "
        "provider key in the settings or switch the project mode to credits or hybrid.",
    )
    broke = make_tenant(deployment.admin, mode="credits", credits="0")
    _assert_error(
        _call(client, "/v1/chat/completions", broke.token, style, model="gpt-4"),
        402,
        f"Organization {broke.org_id} has insufficient credits",
    )
    credits = make_tenant(deployment.admin, mode="credits")
    _assert_error(
        _call(client, "/v1/chat/completions", credits.token, style, model="claude-opus-4"),
        400,
        "No available provider could be found for model claude-opus-4",
    )
    hybrid = make_tenant(deployment.admin, mode="hybrid")
    _assert_error(
        _call(client, "/v1/chat/completions", hybrid.token, style, model="claude-opus-4"),
        400,
        "No available provider could be found for model claude-opus-4",
    )
    hybrid_broke = make_tenant(deployment.admin, mode="hybrid", credits="0")
    _assert_error(
        _call(client, "/v1/chat/completions", hybrid_broke.token, style, model="gpt-4"),
        402,
        "No API key set for provider and organization has insufficient credits",
    )


# -- allowed ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_allowed_is_forwarded_and_charged(
    deployment: Deployment, client: httpx.Client, style: str
) -> None:
    tenant = make_tenant(deployment.admin)
    response = _call(client, "/v1/chat/completions", tenant.token, style, model="gpt-4")
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == "upstream says hi"
    sent = deployment.upstream.requests[-1]
    assert sent["auth"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"]["model"] == _catalog()["models"]["gpt-4"]["providers"]["openai"]["model_id"]
    prices = _catalog()["models"]["gpt-4"]["providers"]["openai"]
    expected = (
        answer["usage"]["prompt_tokens"] * Decimal(prices["input_price"])
        + answer["usage"]["completion_tokens"] * Decimal(prices["output_price"])
    ) / 1_000_000
    key = deployment.admin(deployment.admin.store.get_key(tenant.key.id))
    assert key.usage == expected
    org = deployment.admin(deployment.admin.store.get_organization(tenant.org_id))
    assert org.credits == Decimal("10.00") - expected


def _hold_a_reservation(deployment: Deployment, client: httpx.Client, token: str) -> Any:
    """Start a stream the upstream holds open, so its reservation stays in flight."""
    request = client.build_request(
        "POST",
        "/v1/chat/completions",
        json=chat("gpt-4", content="wait", stream=True),
        headers=auth(token, "bearer"),
    )
    response = client.send(request, stream=True)
    assert response.status_code == 200
    return response


def _finish(deployment: Deployment, response: httpx.Response) -> None:
    deployment.upstream.release_stream()
    assert b"[DONE]" in response.read()
    response.close()


def _waiting_tickets(deployment: Deployment, key_id: str) -> int:
    with contextlib.closing(sqlite3.connect(deployment.admin.path)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM admission_tickets WHERE key_id = ?", (key_id,)
        ).fetchone()
        return int(row[0])


def _second_waits_for_the_first(deployment: Deployment, client: httpx.Client, tenant: Any) -> None:
    """With the first request's reservation (an upper bound, far above its real cost)
    filling the limit, a second request waits in line instead of being refused, and is
    served once the first settles."""
    held = _hold_a_reservation(deployment, client, tenant.token)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        httpx.Client(base_url=deployment.url, timeout=30) as other,
    ):
        try:
            second = pool.submit(_call, other, "/v1/chat/completions", tenant.token, "bearer")
            deadline = time.monotonic() + 10
            while _waiting_tickets(deployment, tenant.key.id) == 0:
                assert time.monotonic() < deadline, "the second request never queued"
                time.sleep(0.01)
            assert not second.done()  # no refusal while only a reservation is in the way
        finally:
            _finish(deployment, held)
        assert second.result().status_code == 200


def test_in_flight_reservations_make_requests_wait_not_fail(
    deployment: Deployment, client: httpx.Client
) -> None:
    tenant = make_tenant(deployment.admin, usage_limit="0.01")
    _second_waits_for_the_first(deployment, client, tenant)
    usage = deployment.admin(deployment.admin.store.get_key(tenant.key.id)).usage
    assert Decimal(0) < usage < Decimal("0.01")


def test_in_flight_credit_reservations_make_requests_wait_not_fail(
    deployment: Deployment, client: httpx.Client
) -> None:
    tenant = make_tenant(deployment.admin, mode="credits", credits="0.01")
    _second_waits_for_the_first(deployment, client, tenant)
    org = deployment.admin(deployment.admin.store.get_organization(tenant.org_id))
    assert Decimal(0) < org.credits < Decimal("0.01")


def test_project_provider_key_is_used(deployment: Deployment, client: httpx.Client) -> None:
    tenant = make_tenant(
        deployment.admin, mode="api-keys", provider_keys={"openai": {"value": "sk-project-own"}}
    )
    response = _call(client, "/v1/chat/completions", tenant.token, "bearer", model="openai/gpt-4")
    assert response.status_code == 200
    assert deployment.upstream.requests[-1]["auth"] == "Bearer sk-project-own"
    org = deployment.admin(deployment.admin.store.get_organization(tenant.org_id))
    assert org.credits == Decimal("10.00")  # paid by the project's own key
    key = deployment.admin(deployment.admin.store.get_key(tenant.key.id))
    assert key.usage > 0  # usage is tracked in every mode


def _served(catalog: dict[str, Any], providers: set[str]) -> list[str]:
    return sorted(
        model for model, entry in catalog["models"].items() if providers & set(entry["providers"])
    )


@pytest.mark.parametrize("style", STYLES)
def test_models_lists_what_the_key_may_use(
    deployment: Deployment, client: httpx.Client, style: str
) -> None:
    catalog = _catalog()
    # The test gateway holds credentials for openai and groq; mock needs none.
    gateway_served = {"openai", "groq", "mock"}
    tenant = make_tenant(deployment.admin)
    response = _call(client, "/v1/models", tenant.token, style)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == _served(catalog, gateway_served)
    for model in body["data"]:
        entry = catalog["models"][model["id"]]
        assert model == {
            "id": model["id"],
            "object": "model",
            "created": entry["created"],
            "owned_by": entry["owned_by"],
        }
    narrowed = make_tenant(deployment.admin, rules=(("allow_models", ("gpt-4*",)),))
    ids = [m["id"] for m in _call(client, "/v1/models", narrowed.token, style).json()["data"]]
    assert sorted(ids) == [m for m in _served(catalog, gateway_served) if m.startswith("gpt-4")]


def test_every_input_document_matched_the_schema(deployment: Deployment) -> None:
    """Runs last: every input document the gateway built above was schema-valid."""
    assert deployment.inputs.checked > 50
    assert deployment.inputs.problems == []
