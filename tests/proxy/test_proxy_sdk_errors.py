"""The official `openai` SDK against the gateway, as README's "Errors and clients" says:
with `error_format: openai` each rejection is the SDK's exception class for its status
carrying the documented message; with the default format the class is the same but the
message is only in the response body. In-process (the TestClient is an httpx client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from litestar.testing import TestClient
from proxy_helpers import MSG_INVALID
from shipped_policy import ShippedPolicies

from proxy.app import create_app
from proxy.config import GatewayConfig
from proxy.errors import ErrorFormat

ADMIN = "admin-sdk-token"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["openai", "documented"])
def error_format(request: pytest.FixtureRequest) -> ErrorFormat:
    chosen: ErrorFormat = request.param
    return chosen


@pytest.fixture
def client(
    error_format: ErrorFormat, tmp_path: Path, shipped_policies: ShippedPolicies
) -> Iterator[TestClient[Any]]:
    config = GatewayConfig(
        database=f"sqlite:///{tmp_path / 'sdk.db'}",
        reload_interval=0.0,
        admin_token=ADMIN,
        error_format=error_format,
    )
    with TestClient(create_app(config, policy=shipped_policies.holder())) as test_client:
        yield test_client


def _sdk(client: TestClient[Any], token: str) -> openai.OpenAI:
    http_client = cast(Any, client)
    return openai.OpenAI(
        base_url=f"{client.base_url}/v1", api_key=token, http_client=http_client, max_retries=0
    )


def _new_key(client: TestClient[Any], deny: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    key = client.post("/admin/keys", json={"project": "default"}, headers=headers).json()
    if deny is not None:
        rule = {"type": "deny_models", "values": [deny]}
        client.post(f"/admin/keys/{key['id']}/iam", json=rule, headers=headers)
    token: str = key["token"]
    return token


def _message(error: openai.APIStatusError, error_format: ErrorFormat) -> str:
    """Where each format puts the documented message for an SDK user."""
    if error_format == "openai":
        return error.message  # "Error code: 403 - <message>"
    body = error.response.json()
    assert body["error"] is True and error.message == f"Error code: {error.status_code}"
    message: str = body["message"]
    return message


@pytest.mark.parametrize(
    ("make_call", "exception", "message"),
    [
        (lambda api: api.models.list(), openai.AuthenticationError, MSG_INVALID),
        (
            lambda api: api.chat.completions.create(model="no-such-model", messages=HI),
            openai.BadRequestError,
            "Unsupported model: no-such-model",
        ),
        (
            lambda api: api.chat.completions.create(model="mock-model", messages=HI),
            openai.PermissionDeniedError,
            "Access denied: Model mock-model is in the denied models list",
        ),
        (
            lambda api: api.responses.create(model="mock-model", input="hi"),
            openai.PermissionDeniedError,
            "Access denied: Model mock-model is in the denied models list",
        ),
    ],
    ids=["401", "400", "403", "403-responses"],
)
def test_rejections_are_the_sdk_exception_with_the_documented_message(
    client: TestClient[Any],
    error_format: ErrorFormat,
    make_call: Any,
    exception: type[openai.APIStatusError],
    message: str,
) -> None:
    token = "llmgtwy_unknown" if exception is openai.AuthenticationError else _new_key(client)
    if exception is openai.PermissionDeniedError:
        token = _new_key(client, deny="mock-model")
    with pytest.raises(exception) as info:
        make_call(_sdk(client, token))
    assert _message(info.value, error_format).endswith(message)


def test_the_mock_answers_the_sdk_and_refuses_as_a_provider(client: TestClient[Any]) -> None:
    api = _sdk(client, _new_key(client))
    ids = {model.id for model in api.models.list()}
    assert {"mock-model", "mock-model-mini", "mock-embedding"} <= ids
    answer = api.chat.completions.create(model="mock-model-mini", messages=HI, n=2)
    assert [choice.index for choice in answer.choices] == [0, 1]
    vectors = api.embeddings.create(model="mock-embedding", input=["a", "b"])
    assert len(vectors.data) == 2
    # The provider's own error (the mock's, OpenAI-shaped in both formats) passes through.
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model="mock-model", messages=[])
    assert info.value.code == "empty_array" and info.value.param == "messages"


def test_the_messages_api_answers_in_anthropics_envelope_in_either_format(
    client: TestClient[Any],
) -> None:
    """`error_format` is for OpenAI clients; the Messages API always uses Anthropic's shape
    (the `anthropic` SDK itself is run against it in test_proxy_agent_apis.py)."""
    headers = {"x-api-key": _new_key(client, deny="mock-model")}
    body = {"model": "mock-model", "max_tokens": 10, "messages": HI}
    answer = client.post("/v1/messages", json=body, headers=headers)
    message = "Access denied: Model mock-model is in the denied models list"
    assert (answer.status_code, answer.json()) == (
        403,
        {"type": "error", "error": {"type": "permission_error", "message": message}},
    )
