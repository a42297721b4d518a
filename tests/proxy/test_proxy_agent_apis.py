"""The Responses (`/v1/responses`) and Messages (`/v1/messages`) APIs against the real
server, through the official `openai` and `anthropic` SDKs: with the built-in mock and
with a fake upstream speaking each API (content, usage, and the key's charge exact to
the catalog's prices, prompt-cache tokens included), every documented error, operation
IAM, and the refusals of what cannot be bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from agent_api_upstream import MESSAGES_USAGE, UPSTREAM_TEXT, AgentApiUpstream
from proxy_deployment import BODY_LIMIT, UPSTREAM_KEY, UPSTREAM_KEY_ENV, Deployment, deployed
from proxy_helpers import MSG_ARCHIVED, MSG_INVALID, MSG_LIMIT, MSG_NO_KEY, Tenant, make_tenant
from shipped_policy import ShippedPolicies

from proxy.config import ProviderConfig
from proxy.mock_agent_apis import reply_quoting

MILLION = Decimal(1_000_000)


@pytest.fixture(scope="module")
def upstream() -> Iterator[AgentApiUpstream]:
    server = AgentApiUpstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    shipped_policies: ShippedPolicies,
    upstream: AgentApiUpstream,
) -> Iterator[Deployment]:
    providers = tuple(
        ProviderConfig(id=provider, base_url=upstream.base_url, api_key_env=UPSTREAM_KEY_ENV)
        for provider in ("openai", "anthropic")
    )
    # The burst's last requests wait for the first ones to settle: on a loaded machine
    # that may take longer than the default 10 s, and a 429 is not what it tests.
    with deployed(
        tmp_path_factory.mktemp("agent-apis"),
        compile_policy=shipped_policies.loader,
        providers=providers,
        admission_wait_seconds=60.0,
    ) as running:
        yield running


@pytest.fixture
def tenant(deployment: Deployment) -> Tenant:
    return make_tenant(deployment.admin)


def _openai(deployment: Deployment, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=token, max_retries=0)


def _anthropic(deployment: Deployment, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=deployment.url, api_key=token, max_retries=0)


def _charged(deployment: Deployment, tenant: Tenant) -> Decimal:
    key = deployment.admin(deployment.admin.store.get_key(tenant.key.id))
    usage: Decimal = key.usage
    return usage


def _cost(prompt: int, completion: int, input_price: str, output_price: str) -> Decimal:
    return (prompt * Decimal(input_price) + completion * Decimal(output_price)) / MILLION


# -- the mock provider ------------------------------------------------------------------

# mock-model: 1.00 / 2.00 USD per million; the mock counts words.
PROMPT = "please say hello"
REPLY = reply_quoting(PROMPT)
REPLY_TOKENS = len(REPLY.split(" "))


def test_responses_create_with_the_mock(deployment: Deployment, tenant: Tenant) -> None:
    api = _openai(deployment, tenant.token)
    response = api.responses.create(model="mock-model", instructions="be brief", input=PROMPT)
    assert response.output_text == REPLY and response.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, REPLY_TOKENS)
    cut = api.responses.create(model="mock-model", input=PROMPT, max_output_tokens=4)
    assert cut.status == "incomplete" and cut.output_text == " ".join(REPLY.split(" ")[:4])
    expected = _cost(5, REPLY_TOKENS, "1.00", "2.00") + _cost(3, 4, "1.00", "2.00")
    assert _charged(deployment, tenant) == expected


def test_responses_stream_with_the_mock(deployment: Deployment, tenant: Tenant) -> None:
    api = _openai(deployment, tenant.token)
    items = [{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]
    with api.responses.stream(model="mock-model", input=items) as stream:  # type: ignore[arg-type]
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY == final.output_text
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, REPLY_TOKENS)
    assert _charged(deployment, tenant) == _cost(3, REPLY_TOKENS, "1.00", "2.00")


def test_messages_create_with_the_mock(deployment: Deployment, tenant: Tenant) -> None:
    message = _anthropic(deployment, tenant.token).messages.create(
        model="mock-model",
        max_tokens=256,
        system="be brief",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, REPLY_TOKENS)
    assert _charged(deployment, tenant) == _cost(5, REPLY_TOKENS, "1.00", "2.00")


def test_messages_with_the_key_in_x_api_key(deployment: Deployment, tenant: Tenant) -> None:
    """As Claude Code sends `ANTHROPIC_API_KEY` (the SDK itself sends a Bearer token)."""
    api = anthropic.Anthropic(
        base_url=deployment.url,
        api_key="unused",
        default_headers={"x-api-key": tenant.token, "Authorization": anthropic.omit},
        max_retries=0,
    )
    message = api.messages.create(
        model="mock-model", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    )
    assert message.content[0].type == "text" and message.content[0].text == REPLY


def test_messages_stream_with_the_mock(deployment: Deployment, tenant: Tenant) -> None:
    api = _anthropic(deployment, tenant.token)
    with api.messages.stream(
        model="mock-model", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY and final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, REPLY_TOKENS)
    assert _charged(deployment, tenant) == _cost(3, REPLY_TOKENS, "1.00", "2.00")


# -- a provider speaking each API -------------------------------------------------------

# gpt-4o at openai: 2.50 input, 1.25 cached input, 10.00 output.
RESPONSES_COST = (30 * Decimal("2.50") + 20 * Decimal("1.25") + 7 * Decimal("10.00")) / MILLION
# claude-sonnet-4 at anthropic: 3.00 input, 0.30 cache read, 3.75 / 6.00 cache write
# (5 minutes / 1 hour), 15.00 output.
MESSAGES_COST = (
    5 * Decimal("3.00")
    + 20 * Decimal("0.30")
    + 6 * Decimal("3.75")
    + 4 * Decimal("6.00")
    + 7 * Decimal("15.00")
) / MILLION


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_responses_forwarded_natively(
    deployment: Deployment, upstream: AgentApiUpstream, tenant: Tenant, streamed: bool
) -> None:
    api = _openai(deployment, tenant.token)
    if streamed:
        with api.responses.stream(model="gpt-4o", input="hi") as stream:
            response = stream.get_final_response()
    else:
        response = api.responses.create(model="gpt-4o", input="hi")
    assert response.output_text == UPSTREAM_TEXT
    assert response.usage is not None and response.usage.input_tokens == 50
    assert _charged(deployment, tenant) == RESPONSES_COST
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/responses"
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # The reservation assumed the default completion limit: the provider gets it.
    assert sent["body"]["max_output_tokens"] == 4096 and "stream_options" not in sent["body"]


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_messages_forwarded_natively(
    deployment: Deployment, upstream: AgentApiUpstream, tenant: Tenant, streamed: bool
) -> None:
    api = _anthropic(deployment, tenant.token)
    request: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "extra_headers": {"anthropic-version": "2023-06-01", "anthropic-beta": "beta-x"},
    }
    if streamed:
        with api.messages.stream(**request) as stream:
            message = stream.get_final_message()
    else:
        message = api.messages.create(**request)
    assert message.content[0].type == "text" and message.content[0].text == UPSTREAM_TEXT
    assert message.usage.cache_read_input_tokens == MESSAGES_USAGE["cache_read_input_tokens"]
    assert _charged(deployment, tenant) == MESSAGES_COST
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["model"] == "claude-sonnet-4-20250514"
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["headers"]["authorization"] is None
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["anthropic-beta"] == "beta-x"


def test_counting_tokens_is_forwarded_and_free(
    deployment: Deployment, upstream: AgentApiUpstream, tenant: Tenant
) -> None:
    """Claude Code counts tokens through `/v1/messages/count_tokens` (Anthropic bills
    nothing for it): the mock and a provider answer, the key is charged nothing."""
    api = _anthropic(deployment, tenant.token)
    hi: Any = [{"role": "user", "content": PROMPT}]
    assert api.messages.count_tokens(model="mock-model", messages=hi).input_tokens == 3
    counted = api.messages.count_tokens(model="claude-sonnet-4", messages=hi, system="be brief")
    assert counted.input_tokens == 42
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["body"]["model"] == "claude-sonnet-4-20250514"
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert _charged(deployment, tenant) == 0


def test_provider_error_passes_through_to_the_anthropic_sdk(
    deployment: Deployment, tenant: Tenant
) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        _anthropic(deployment, tenant.token).messages.create(
            model="claude-sonnet-4", max_tokens=10, messages=[{"role": "user", "content": "fail"}]
        )
    assert info.value.status_code == 529
    assert _charged(deployment, tenant) == 0


def test_a_provider_lost_mid_stream_ends_it_with_an_anthropic_error_event(
    deployment: Deployment, tenant: Tenant
) -> None:
    api = _anthropic(deployment, tenant.token)
    cut: Any = [{"role": "user", "content": "cut"}]
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        api.messages.stream(model="claude-sonnet-4", max_tokens=10, messages=cut) as stream,
    ):
        stream.until_done()
    assert info.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": "Upstream provider anthropic failed mid-stream"},
    }


# -- the documented errors through each SDK -----------------------------------------------


def _error_cases(deployment: Deployment) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(token, status, documented message, request overrides) for every gateway check;
    `model: ""` stands for a model a real provider serves through the API under test."""
    admin = deployment.admin
    limited = make_tenant(admin, usage_limit="0")
    archived = make_tenant(admin)
    admin(admin.store.archive_project(archived.project_id))
    broke = make_tenant(admin, mode="credits", credits="0")
    denied = make_tenant(admin, rules=(("deny_operations", ("responses", "messages")),))
    keyless = make_tenant(admin, mode="api-keys")
    good = make_tenant(admin).token
    return [
        ("", 401, MSG_NO_KEY, {}),
        ("llmgtwy_" + "x" * 43, 401, MSG_INVALID, {}),
        (limited.token, 401, MSG_LIMIT, {}),
        (archived.token, 410, MSG_ARCHIVED, {}),
        (good, 400, "Unsupported model: no-such-model", {"model": "no-such-model"}),
        (denied.token, 403, "Access denied: Operation {op} is in the denied operations list", {}),
        (broke.token, 402, f"Organization {broke.org_id} has insufficient credits", {"model": ""}),
        (
            keyless.token,
            400,
            "No provider key set for any of the providers that support model {model}. Please add "
            "the provider key in the settings or switch the project mode to credits or hybrid.",
            {"model": ""},
        ),
    ]


ANTHROPIC_ERRORS = {
    400: anthropic.BadRequestError,
    401: anthropic.AuthenticationError,
    402: anthropic.APIStatusError,
    403: anthropic.PermissionDeniedError,
    410: anthropic.APIStatusError,
}
OPENAI_ERRORS = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    402: openai.APIStatusError,
    403: openai.PermissionDeniedError,
    410: openai.APIStatusError,
}


def test_every_documented_error_through_the_anthropic_sdk(deployment: Deployment) -> None:
    for token, status, message, overrides in _error_cases(deployment):
        api = _anthropic(deployment, token or "unused")
        headers = {} if token else {"Authorization": anthropic.omit}  # no credential at all
        request = {"model": "mock-model", "max_tokens": 10, **overrides}
        request["model"] = request["model"] or "claude-sonnet-4"
        with pytest.raises(ANTHROPIC_ERRORS[status]) as info:
            api.messages.create(
                messages=[{"role": "user", "content": "hi"}], extra_headers=headers, **request
            )
        assert info.value.status_code == status
        error = info.value.response.json()
        assert error["type"] == "error"
        expected = message.format(op="messages", model="claude-sonnet-4")
        assert error["error"]["message"] == expected, status


def test_every_documented_error_through_the_openai_sdk(deployment: Deployment) -> None:
    for token, status, message, overrides in _error_cases(deployment):
        api = _openai(deployment, token or "unused")
        headers = {} if token else {"Authorization": openai.omit}  # no credential at all
        request = {"model": "mock-model", "input": "hi", **overrides}
        request["model"] = request["model"] or "gpt-4o"
        with pytest.raises(OPENAI_ERRORS[status]) as info:
            api.responses.create(**request, extra_headers=headers)
        assert info.value.status_code == status
        # The documented shape, as on chat (`error_format: documented`, the default).
        assert info.value.response.json() == {
            "error": True,
            "status": status,
            "message": message.format(op="responses", model="gpt-4o"),
        }


def test_a_body_over_the_limit_is_413_in_each_family(
    deployment: Deployment, tenant: Tenant
) -> None:
    big = "x" * (BODY_LIMIT + 1)
    message = f"Request body too large: the limit is {BODY_LIMIT} bytes"
    with pytest.raises(anthropic.ContentTooLargeError) as messages:
        _anthropic(deployment, tenant.token).messages.create(
            model="mock-model", max_tokens=10, messages=[{"role": "user", "content": big}]
        )
    assert messages.value.response.json()["error"] == {
        "type": "request_too_large",
        "message": message,
    }
    with pytest.raises(openai.APIStatusError) as responses:
        _openai(deployment, tenant.token).responses.create(model="mock-model", input=big)
    assert responses.value.status_code == 413
    assert responses.value.response.json() == {"error": True, "status": 413, "message": message}


def test_a_body_error_names_the_field_in_each_family(
    deployment: Deployment, tenant: Tenant
) -> None:
    with pytest.raises(anthropic.BadRequestError) as messages:
        _anthropic(deployment, tenant.token).messages.create(
            model="mock-model", max_tokens=0, messages=[{"role": "user", "content": "hi"}]
        )
    assert "field `max_tokens`" in messages.value.response.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as responses:
        _openai(deployment, tenant.token).responses.create(model="mock-model", input=3)  # type: ignore[arg-type]
    assert "field `input`" in responses.value.response.json()["message"]


# -- operation IAM, routing by API, and what cannot be bounded ----------------------------


def test_operation_rules_govern_both_endpoints(deployment: Deployment) -> None:
    only = make_tenant(deployment.admin, rules=(("allow_operations", ("responses",)),))
    assert _openai(deployment, only.token).responses.create(model="mock-model", input="hi").id
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        _anthropic(deployment, only.token).messages.create(
            model="mock-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    expected = "Access denied: Operation messages is not in the allowed operations list"
    assert info.value.response.json()["error"] == {"type": "permission_error", "message": expected}


def test_a_model_whose_providers_do_not_speak_the_api_is_400(
    deployment: Deployment, tenant: Tenant
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        _anthropic(deployment, tenant.token).messages.create(
            model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.response.json()["error"]["message"] == (
        "Model gpt-4o is not served through /v1/messages by any of its allowed providers; "
        "they serve /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses"
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/responses",
            {"input": "hi", "previous_response_id": "resp_1"},
            "previous_response_id",
        ),
        ("/v1/responses", {"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            "/v1/messages",
            {
                "max_tokens": 10,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "base64", "data": "x"}}
                        ],
                    }
                ],
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_what_cannot_be_bounded_is_refused_for_free(
    deployment: Deployment, tenant: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(
        f"{deployment.url}{path}",
        json={"model": "mock-model", **body},
        headers={"x-api-key": tenant.token},
    )
    assert response.status_code == 400
    text = response.text
    assert f"field `{field}`" in text
    assert _charged(deployment, tenant) == 0


def test_schema_files_list_the_new_operations() -> None:
    schema = (Path(__file__).parents[2] / "schemas" / "input.schema.json").read_text()
    assert '"responses"' in schema and '"messages"' in schema


# -- spend caps: the exact-N burst on /v1/messages -----------------------------------------

# 984 prompt words and `max_tokens: 8` (the mock's reply cut to 8 words): 984 x 1.00 +
# 8 x 2.00 = 1,000 millionths, exactly 0.001 per request at mock-model's prices, while
# the gateway reserves several times that (its bound counts the prompt's bytes).
BURST_BODY = {
    "model": "mock-model",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": " ".join(["word"] * 984)}],
}
BURST_N = 20


async def _burst(url: str, token: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(f"{url}/v1/messages", json=BURST_BODY, headers=headers)
                for _ in range(200)
            )
        )


def test_the_exact_n_burst_holds_on_messages(deployment: Deployment) -> None:
    limited = make_tenant(deployment.admin, usage_limit=str(BURST_N * Decimal("0.001")))
    answers = asyncio.run(_burst(deployment.url, limited.token))
    assert sum(answer.status_code == 200 for answer in answers) == BURST_N
    refusal = {"type": "error", "error": {"type": "authentication_error", "message": MSG_LIMIT}}
    assert all(a.json() == refusal for a in answers if a.status_code != 200)
    assert _charged(deployment, limited) == BURST_N * Decimal("0.001")
