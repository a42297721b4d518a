"""The app in-process (Litestar's TestClient, lifespan and all): admin API, error format,
health, and what happens when the policy misbehaves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from litestar.testing import AsyncTestClient, TestClient
from proxy_helpers import MSG_INVALID, MSG_NO_KEY
from shipped_policy import ShippedPolicies

from proxy.app import create_app, open_configured_store
from proxy.config import GatewayConfig
from proxy.mock_provider import mock_reply
from proxy.policy import DecideFn, PolicyHolder
from proxy.store.base import Admitted, Claim, Queued, Refused, Store

ADMIN = "admin-test-token"


def _config(tmp_path: Path, **overrides: Any) -> GatewayConfig:
    return GatewayConfig(
        database=f"sqlite:///{tmp_path / 'app.db'}", reload_interval=0.0, **overrides
    )


@pytest.fixture
def admin_client(tmp_path: Path, shipped_policies: ShippedPolicies) -> Iterator[TestClient[Any]]:
    with TestClient(
        create_app(_config(tmp_path, admin_token=ADMIN), policy=shipped_policies.holder())
    ) as client:
        yield client


def _admin(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_and_readiness(admin_client: TestClient[Any]) -> None:
    assert admin_client.get("/healthz").json() == {"status": "ok"}
    assert admin_client.get("/readyz").json() == {"status": "ready"}


def test_admin_requires_the_token(admin_client: TestClient[Any]) -> None:
    for headers in ({}, _admin("wrong")):
        response = admin_client.get("/admin/keys", headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "error": True,
            "status": 401,
            "message": "Unauthorized: missing or wrong admin token",
        }


def test_a_wrong_method_is_answered_405_with_allow(admin_client: TestClient[Any]) -> None:
    response = admin_client.post("/v1/models")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, OPTIONS"
    assert response.json() == {"error": True, "status": 405, "message": "Method Not Allowed"}


def test_repeated_wrong_admin_tokens_make_the_address_wait(
    admin_client: TestClient[Any],
) -> None:
    for _ in range(10):
        assert admin_client.get("/admin/keys", headers=_admin("wrong")).status_code == 401
    # Now even the right token is not checked until the wait is over.
    refused = admin_client.get("/admin/keys", headers=_admin(ADMIN))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 300
    assert refused.json()["message"].startswith(
        "Too many requests with a wrong admin token from this address"
    )


def test_a_right_admin_token_clears_earlier_failures(admin_client: TestClient[Any]) -> None:
    for _ in range(9):
        admin_client.get("/admin/keys", headers=_admin("wrong"))
    assert admin_client.get("/admin/keys", headers=_admin(ADMIN)).status_code == 200
    for _ in range(9):
        admin_client.get("/admin/keys", headers=_admin("wrong"))
    assert admin_client.get("/admin/keys", headers=_admin(ADMIN)).status_code == 200


def test_admin_key_lifecycle_then_a_completion(admin_client: TestClient[Any]) -> None:
    created = admin_client.post(
        "/admin/keys",
        json={"project": "default", "usage_limit": "5.00", "description": "ci"},
        headers=_admin(),
    )
    assert created.status_code == 201
    key = created.json()
    assert key["token"].startswith("llmgtwy_") and key["usage_limit"] == "5.00"
    shown = admin_client.get(f"/admin/keys/{key['id']}", headers=_admin()).json()
    assert "token" not in shown and Decimal(shown["usage"]) == 0 and shown["status"] == "active"
    rule = admin_client.post(
        f"/admin/keys/{key['id']}/iam",
        json={"type": "deny_models", "values": ["gpt-4"]},
        headers=_admin(),
    ).json()
    rules = admin_client.get(f"/admin/keys/{key['id']}/iam", headers=_admin()).json()
    assert [r["id"] for r in rules] == [rule["id"]]
    toggled = admin_client.put(
        f"/admin/keys/{key['id']}/iam/{rule['id']}/status",
        json={"status": "inactive"},
        headers=_admin(),
    )
    assert toggled.json()["status"] == "inactive"
    renamed = admin_client.put(
        f"/admin/keys/{key['id']}/description", json={"description": "ci runner"}, headers=_admin()
    )
    assert renamed.json()["description"] == "ci runner"
    answer = admin_client.post(
        "/v1/chat/completions",
        json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": key["token"]},
    )
    assert answer.status_code == 200
    reply = mock_reply("chat.completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert answer.json()["choices"][0]["message"]["content"] == reply
    after = admin_client.get(f"/admin/keys/{key['id']}", headers=_admin()).json()
    assert Decimal(after["usage"]) > 0
    disabled = admin_client.post(f"/admin/keys/{key['id']}/disable", headers=_admin())
    assert disabled.json()["status"] == "inactive"


def test_a_project_rule_applies_to_every_key_of_the_project(
    admin_client: TestClient[Any],
) -> None:
    token = admin_client.post("/admin/keys", json={"project": "default"}, headers=_admin())
    rule = admin_client.post(
        "/admin/projects/default/iam",
        json={"type": "deny_models", "values": ["mock-*"]},
        headers=_admin(),
    ).json()
    chat = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": token.json()["token"]}
    denied = admin_client.post("/v1/chat/completions", json=chat, headers=headers)
    assert denied.status_code == 403, denied.text
    admin_client.put(
        f"/admin/projects/default/iam/{rule['id']}/status",
        json={"status": "inactive"},
        headers=_admin(),
    )
    assert admin_client.post("/v1/chat/completions", json=chat, headers=headers).status_code == 200
    renamed = admin_client.put(
        "/admin/projects/default/name", json={"name": "Default"}, headers=_admin()
    )
    assert renamed.json()["name"] == "Default"


def test_the_fast_path_answers_exactly_as_the_routed_path(
    admin_client: TestClient[Any],
) -> None:
    """`/v1/chat/completions` is answered before Litestar's router; the same operation
    reached through the router (a trailing slash) gives the same status, body and
    header lines, allowed or refused, whole or streamed."""
    token = admin_client.post("/admin/keys", json={"project": "default"}, headers=_admin())
    chat = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        (chat, {"x-api-key": token.json()["token"]}),
        ({**chat, "stream": True}, {"x-api-key": token.json()["token"]}),
        (chat, {"Authorization": "Bearer not-a-key"}),
        (chat, {}),
        ({"model": 7}, {"x-api-key": token.json()["token"]}),
    ]
    for body, headers in cases:
        fast = admin_client.post("/v1/chat/completions", json=body, headers=headers)
        routed = admin_client.post("/v1/chat/completions/", json=body, headers=headers)
        assert fast.status_code == routed.status_code, (body, headers)
        if body.get("stream"):
            assert fast.text.startswith("data: ") and routed.text.startswith("data: ")
        else:
            assert _without_ids(fast.json()) == _without_ids(routed.json())
        # Header lines in the same order; a mock answer's length differs with its id.
        assert _lines(fast.headers.multi_items()) == _lines(routed.headers.multi_items())


def _lines(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, "" if name in ("content-length", "date") else value) for name, value in headers]


def _without_ids(value: Any) -> Any:
    """A mock answer without the parts that differ between two calls."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in ("id", "created")}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def test_admin_hides_literal_provider_secrets(admin_client: TestClient[Any]) -> None:
    by_env = admin_client.put(
        "/admin/projects/default/provider-keys/openai", json={"env": "OPENAI_KEY"}, headers=_admin()
    )
    assert by_env.json()["provider_keys"] == {"openai": "env:OPENAI_KEY"}
    by_value = admin_client.put(
        "/admin/projects/default/provider-keys/openai",
        json={"value": "sk-secret"},
        headers=_admin(),
    )
    assert by_value.json()["provider_keys"] == {"openai": "value"}
    assert "sk-secret" not in by_value.text


def test_admin_errors_use_the_documented_shape(admin_client: TestClient[Any]) -> None:
    missing = admin_client.get("/admin/keys/key_nope", headers=_admin())
    assert missing.status_code == 404
    assert missing.json()["error"] is True and missing.json()["status"] == 404
    invalid = admin_client.post("/admin/orgs", json={"id": "x", "credits": "-1"}, headers=_admin())
    assert invalid.status_code == 400 and invalid.json()["status"] == 400


def test_a_deleted_key_cannot_be_re_enabled_through_the_admin_api(
    admin_client: TestClient[Any],
) -> None:
    key = admin_client.post("/admin/keys", json={"project": "default"}, headers=_admin()).json()
    assert admin_client.delete(f"/admin/keys/{key['id']}", headers=_admin()).status_code == 200
    for action in ("enable", "disable"):
        refused = admin_client.post(f"/admin/keys/{key['id']}/{action}", headers=_admin())
        assert refused.status_code == 409
        assert refused.json()["status"] == 409
        assert "cannot be re-enabled" in refused.json()["message"]
    shown = admin_client.get(f"/admin/keys/{key['id']}", headers=_admin()).json()
    assert shown["status"] == "deleted"


def test_no_admin_api_without_the_token(tmp_path: Path, shipped_policies: ShippedPolicies) -> None:
    with TestClient(create_app(_config(tmp_path), policy=shipped_policies.holder())) as client:
        response = client.get("/admin/keys", headers=_admin())
        assert response.status_code == 404
        assert response.json() == {"error": True, "status": 404, "message": "Not Found"}


def test_openai_error_format(tmp_path: Path, shipped_policies: ShippedPolicies) -> None:
    with TestClient(
        create_app(_config(tmp_path, error_format="openai"), policy=shipped_policies.holder())
    ) as client:
        response = client.get("/v1/models")
        assert response.status_code == 401
        assert response.json() == {
            "error": {
                "message": MSG_NO_KEY,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }


def _loader_returning(value: object) -> Any:
    def load(policy_dir: str, data: dict[str, Any]) -> DecideFn:
        return lambda document: value

    return load


@pytest.mark.parametrize("value", [{"allow": "yes"}, None, {"status": 200}])
def test_a_policy_without_a_usable_decision_is_a_500(tmp_path: Path, value: object) -> None:
    config = _config(tmp_path)
    holder = PolicyHolder(config.policy_dir, config.catalog_path, loader=_loader_returning(value))
    with TestClient(create_app(config, policy=holder)) as client:
        response = client.get("/v1/models", headers={"x-api-key": "anything"})
        assert response.status_code == 500
        assert response.json() == {
            "error": True,
            "status": 500,
            "message": "Internal error: the policy gave no decision; see the gateway log",
        }


class RefusingStore:
    """The real store, except that every reservation is refused (as under a race)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def admit(self, claim: Claim, ticket: str) -> Admitted | Queued | Refused:
        return self.outcome

    outcome: Admitted | Queued | Refused = Refused(reason="limit")


class QueueingStore(RefusingStore):
    outcome = Queued()


BUSY = "Too many requests in flight for this key's usage limit; retry after 1 second"


@pytest.mark.parametrize("store_type", [RefusingStore, QueueingStore])
def test_admission_that_never_comes_is_429_with_retry_after(
    tmp_path: Path, store_type: type[RefusingStore], shipped_policies: ShippedPolicies
) -> None:
    """A store that keeps refusing while the policy, on the fresh settled figures, keeps
    allowing (a limit changing under the request), or keeps the request in line past
    `admission_wait_seconds`: 429 with Retry-After, never a 401 the figures do not show."""

    async def refusing(config: GatewayConfig) -> Store:
        return cast(Store, store_type(await open_configured_store(config)))

    config = _config(tmp_path, admin_token=ADMIN, admission_wait_seconds=0.2)
    app = create_app(config, store_factory=refusing, policy=shipped_policies.holder())
    with TestClient(app) as client:
        key = client.post(
            "/admin/keys", json={"project": "default", "usage_limit": "1.00"}, headers=_admin()
        ).json()
        response = client.post(
            "/v1/chat/completions",
            json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": key["token"]},
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"error": True, "status": 429, "message": BUSY}


def test_openai_client_reads_the_message_in_openai_error_format(
    tmp_path: Path, shipped_policies: ShippedPolicies
) -> None:
    with TestClient(
        create_app(_config(tmp_path, error_format="openai"), policy=shipped_policies.holder())
    ) as client:
        # Litestar's TestClient is an httpx.Client, so openai talks to the app in-process.
        http_client = cast(Any, client)
        api = openai.OpenAI(
            base_url=f"{client.base_url}/v1", api_key="llmgtwy_unknown", http_client=http_client
        )
        with pytest.raises(openai.AuthenticationError) as info:
            api.models.list()
        assert info.value.message.endswith(MSG_INVALID)
        assert info.value.code == "invalid_api_key"


def test_a_stream_never_started_is_closed_and_released(
    tmp_path: Path, shipped_policies: ShippedPolicies
) -> None:
    """The client left between the decision and the first chunk: Litestar never iterates
    the stream, and the response's cleanup gives the reservation back."""
    app = create_app(_config(tmp_path, admin_token=ADMIN), policy=shipped_policies.holder())

    async def scenario() -> tuple[Decimal, Decimal, Decimal]:
        async with AsyncTestClient(app) as client:
            created = await client.post(
                "/admin/keys", json={"project": "default"}, headers=_admin()
            )
            token = created.json()["token"]
            gateway = app.state.gateway
            store = app.state.store
            body = (
                b'{"model": "mock-model", "stream": true,'
                b' "messages": [{"role": "user", "content": "hi"}]}'
            )
            reply = await gateway.handle(
                "chat.completions", {"authorization": f"Bearer {token}"}, "127.0.0.1", body
            )
            assert reply.stream is not None and reply.cleanup is not None
            held = (await store.key_context(store.hash_token(token), fresh=True)).reserved
            await reply.cleanup()
            context = await store.key_context(store.hash_token(token), fresh=True)
            return held, context.reserved, context.key.usage

    held, reserved, usage = asyncio.run(scenario())
    assert held > 0
    assert reserved == 0 and usage == 0
