"""Forwarding against the real server: the official `openai` client, streaming,
faults (502, 504, 413, pass-through), client disconnects, metrics and logs; every test
runs with each upstream client (`upstream_client`: native and aiohttp)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import openai
import pytest
from proxy_deployment import BODY_LIMIT, UPSTREAM_KEY, Deployment, deployed
from proxy_helpers import MSG_INVALID, Tenant, auth, chat, documented, make_tenant
from shipped_policy import ShippedPolicies

from proxy.mock_provider import mock_reply
from proxy.tokens import generate_token

# Every token this module hands out; the last test searches the logs for them.
TOKENS: list[str] = []


@pytest.fixture(scope="module", params=["native", "aiohttp"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    shipped_policies: ShippedPolicies,
) -> Iterator[Deployment]:
    """The shared gateway of tests/proxy/conftest.py, once per upstream client."""
    with deployed(
        tmp_path_factory.mktemp("gateway"),
        compile_policy=shipped_policies.loader,
        upstream_client=request.param,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployment.url, timeout=30) as http:
        yield http


@pytest.fixture
def tenant(deployment: Deployment) -> Tenant:
    made = make_tenant(deployment.admin)
    TOKENS.append(made.token)
    return made


def _openai(deployment: Deployment, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{deployment.url}/v1", api_key=token, max_retries=0)


def _usage(deployment: Deployment, tenant: Tenant) -> Decimal:
    key = deployment.admin(deployment.admin.store.get_key(tenant.key.id))
    usage: Decimal = key.usage
    return usage


def _eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for a condition another thread makes true (no timing is asserted)."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after 10 s: {what}")
        time.sleep(0.01)


# -- the official client ------------------------------------------------------------


def test_openai_chat(deployment: Deployment, tenant: Tenant) -> None:
    completion = _openai(deployment, tenant.token).chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.choices[0].message.content == "upstream says hi"
    assert completion.usage is not None and completion.usage.completion_tokens == 7


def test_openai_chat_with_the_mock_provider(deployment: Deployment, tenant: Tenant) -> None:
    completion = _openai(deployment, tenant.token).chat.completions.create(
        model="mock-model", messages=[{"role": "user", "content": "three words here"}]
    )
    assert completion.choices[0].message.content == (
        "This is a mock response from the gateway. You said: three words here"
    )
    assert completion.usage is not None and completion.usage.prompt_tokens == 3
    assert _usage(deployment, tenant) > 0


def test_openai_completions_with_the_mock_provider(deployment: Deployment, tenant: Tenant) -> None:
    api = _openai(deployment, tenant.token)
    completion = api.completions.create(model="mock-model", prompt="two words")
    reply = mock_reply("completions", {"prompt": "two words"})
    assert completion.choices[0].text == reply
    assert completion.usage is not None and completion.usage.prompt_tokens == 2
    streamed = api.completions.create(model="mock-model", prompt="two words", stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == reply


def test_openai_stream_arrives_before_upstream_finishes(
    deployment: Deployment, tenant: Tenant
) -> None:
    finished_before = deployment.upstream.finished_streams
    stream = _openai(deployment, tenant.token).chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "wait"}], stream=True
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.content == "one"
    # The upstream is still holding its last chunk back: the first one was relayed as is.
    assert deployment.upstream.finished_streams == finished_before
    deployment.upstream.release_stream()
    rest = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == " two three"
    # The client did not ask for usage: the usage-only chunk the gateway requested is dropped.
    assert all(chunk.usage is None for chunk in rest)
    assert deployment.upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    _eventually(lambda: _usage(deployment, tenant) > 0, "the stream is settled")


def test_stream_keeps_usage_chunk_when_asked(deployment: Deployment, tenant: Tenant) -> None:
    stream = _openai(deployment, tenant.token).chat.completions.create(
        model="gpt-4",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(5, 7)]


def test_openai_embeddings(deployment: Deployment, tenant: Tenant) -> None:
    result = _openai(deployment, tenant.token).embeddings.create(
        model="text-embedding-3-small", input="hello"
    )
    assert result.data[0].embedding == [0.1, 0.2, 0.3]
    assert deployment.upstream.requests[-1]["path"] == "/v1/embeddings"


def test_openai_models_list(deployment: Deployment, tenant: Tenant) -> None:
    ids = [model.id for model in _openai(deployment, tenant.token).models.list()]
    assert "gpt-4" in ids and "mock-model" in ids
    assert "claude-opus-4" not in ids  # no credential for anthropic in this gateway


def test_openai_authentication_error(deployment: Deployment) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        _openai(deployment, generate_token()).chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 401
    assert info.value.response.json() == documented(401, MSG_INVALID)


def test_openai_permission_denied(deployment: Deployment) -> None:
    denied = make_tenant(deployment.admin, rules=(("deny_models", ("gpt-4",)),))
    TOKENS.append(denied.token)
    with pytest.raises(openai.PermissionDeniedError) as info:
        _openai(deployment, denied.token).chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "hi"}]
        )
    message = "Access denied: Model gpt-4 is in the denied models list"
    assert info.value.response.json() == documented(403, message)


# -- faults: none of them charges ---------------------------------------------------


def test_upstream_down_is_502(deployment: Deployment, client: httpx.Client, tenant: Tenant) -> None:
    response = client.post(
        "/v1/chat/completions",
        json=chat("groq/llama-3.3-70b-instruct"),
        headers=auth(tenant.token, "bearer"),
    )
    assert response.status_code == 502
    assert response.json() == documented(502, "Upstream provider groq could not connect")
    assert _usage(deployment, tenant) == 0


def test_upstream_hang_is_504(deployment: Deployment, client: httpx.Client, tenant: Tenant) -> None:
    response = client.post(
        "/v1/chat/completions", json=chat(content="hang"), headers=auth(tenant.token, "bearer")
    )
    assert response.status_code == 504
    assert response.json() == documented(504, "Upstream provider openai timed out")
    assert _usage(deployment, tenant) == 0


def test_body_over_limit_is_413(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    big = chat(content="x" * (BODY_LIMIT + 1))
    response = client.post("/v1/chat/completions", json=big, headers=auth(tenant.token, "bearer"))
    assert response.status_code == 413
    message = f"Request body too large: the limit is {BODY_LIMIT} bytes"
    assert response.json() == documented(413, message)
    assert _usage(deployment, tenant) == 0


def test_malformed_json_is_400(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    response = client.post(
        "/v1/chat/completions", content=b'{"model": ', headers=auth(tenant.token, "x-api-key")
    )
    assert response.status_code == 400
    assert response.json()["error"] is True
    assert response.json()["message"].startswith("Invalid request body: not valid JSON")
    assert _usage(deployment, tenant) == 0


def test_upstream_error_passes_through(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    response = client.post(
        "/v1/chat/completions", json=chat(content="fail"), headers=auth(tenant.token, "bearer")
    )
    assert response.status_code == 503
    assert response.json() == {"error": {"message": "upstream overloaded", "type": "server_error"}}
    assert _usage(deployment, tenant) == 0


def test_upstream_stalling_mid_stream_ends_it_with_an_error_event(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    upstream_client = deployment.gateway.app.state.upstream
    response = client.post(
        "/v1/chat/completions",
        json=chat(content="wait", stream=True),
        headers=auth(tenant.token, "bearer"),
    )
    # Headers were already sent: status 200, the chunks so far, then an error event.
    assert response.status_code == 200
    events = [line for line in response.text.split("\n\n") if line]
    assert '"one"' in events[0] and '" two"' in events[1]
    assert json.loads(events[-1].removeprefix("data: ")) == {
        "error": {
            "message": "Upstream provider openai failed mid-stream",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    # Content was relayed before the cut: charged for it (test_proxy_stream_charging.py).
    _eventually(lambda: _usage(deployment, tenant) > 0, "the cut stream is settled")
    assert upstream_client.responses_open == 0
    _eventually(lambda: deployment.upstream.stream_clients_gone, "the upstream saw the close")
    deployment.upstream.release_stream()
    _eventually(lambda: deployment.upstream.active_streams == 0, "the upstream stream ended")


def test_client_leaving_a_plain_request_cancels_upstream(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/v1/chat/completions",
            json=chat(content="hang"),
            headers=auth(tenant.token, "bearer"),
            timeout=0.2,  # the client gives up long before the gateway's read timeout
        )
    _eventually(lambda: deployment.upstream.hanging_clients_gone, "the upstream call is cut")
    store = deployment.admin.store

    def released() -> bool:
        context = deployment.admin(store.key_context(store.hash_token(tenant.token)))
        assert context is not None
        return context.reserved == 0

    _eventually(released, "the reservation is released")
    assert _usage(deployment, tenant) == 0
    expected = (f'"key_id":"{tenant.key.id}"', '"status":499', '"reason":"client disconnected"')
    _eventually(
        lambda: any(all(part in line for part in expected) for line in deployment.logs.lines),
        "the decision line says the client left",
    )


def test_client_disconnect_cancels_upstream(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    upstream_client = deployment.gateway.app.state.upstream
    finished_before = deployment.upstream.finished_streams
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json=chat(content="wait", stream=True),
        headers=auth(tenant.token, "bearer"),
    ) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()  # kept: dropping the generator would close the stream
        first = next(chunks)
        assert b'"one"' in first
        assert upstream_client.responses_open == 1
    # The client is gone: the gateway closes its upstream response and drops the connection.
    _eventually(lambda: upstream_client.responses_open == 0, "the upstream response is closed")
    _eventually(lambda: deployment.upstream.stream_clients_gone, "the upstream saw the close")
    deployment.upstream.release_stream()
    _eventually(lambda: deployment.upstream.active_streams == 0, "the upstream stream ended")
    assert deployment.upstream.finished_streams == finished_before  # it never completed
    metrics = client.get("/metrics").text
    assert "gateway_upstream_responses_open 0.0" in metrics


# -- observability ----------------------------------------------------------------------


def test_metrics_count_requests_tokens_and_cost(client: httpx.Client, tenant: Tenant) -> None:
    assert client.post("/v1/chat/completions", json=chat(), headers=auth(tenant.token, "bearer"))
    # Its own refusal: the test must not lean on an earlier test's 401 (the suite runs
    # its files in several processes).
    refused = client.post(
        "/v1/chat/completions", json=chat(), headers=auth("llmgtwy_not-a-key", "bearer")
    )
    assert refused.status_code == 401
    text = client.get("/metrics").text
    assert 'gateway_requests_total{operation="chat.completions",status="200"}' in text
    assert 'gateway_requests_total{operation="chat.completions",status="401"}' in text
    assert "gateway_decision_seconds_count" in text
    assert 'gateway_upstream_seconds_count{provider="openai"}' in text
    assert 'gateway_tokens_total{provider="openai",model="gpt-4",kind="completion"}' in text
    assert 'gateway_cost_usd_total{provider="openai",model="gpt-4"}' in text


def test_decision_log_has_one_line_per_request(
    deployment: Deployment, client: httpx.Client, tenant: Tenant
) -> None:
    before = len([line for line in deployment.logs.lines if "gateway.decision" in line])
    client.post("/v1/chat/completions", json=chat("gpt-17"), headers=auth(tenant.token, "bearer"))
    lines = [line for line in deployment.logs.lines if "gateway.decision" in line]
    assert len(lines) == before + 1
    assert f'"key_id":"{tenant.key.id}"' in lines[-1]
    assert '"status":400' in lines[-1]
    assert '"reason":"Unsupported model: gpt-17"' in lines[-1]
    client.post("/v1/chat/completions", json=chat(), headers=auth(tenant.token, "bearer"))
    allowed = json.loads(
        [line for line in deployment.logs.lines if "gateway.decision" in line][-1].split(" ", 2)[2]
    )
    usage = _usage(deployment, tenant)
    assert allowed["decision"] == "allow" and allowed["provider"] == "openai"
    assert (allowed["prompt_tokens"], allowed["completion_tokens"]) == (5, 7)
    assert Decimal(allowed["cost"]) == usage > 0
    assert allowed["policy_ms"] >= 0 and allowed["upstream_ms"] >= 0


def test_no_token_in_any_log_line(deployment: Deployment) -> None:
    """Runs last in this module: every token used above must be absent from the logs."""
    assert len(TOKENS) > 10
    # Records of the test's own HTTP clients (httpx, openai) are the client side, not
    # the gateway's; everything else (gateway, uvicorn, litestar, aiohttp) is searched.
    client_side = ("httpx", "httpcore", "openai")
    gateway_lines = [line for line in deployment.logs.lines if not line.startswith(client_side)]
    assert any("gateway.decision" in line for line in gateway_lines)
    text = "\n".join(gateway_lines)
    for token in TOKENS:
        assert token not in text
    assert UPSTREAM_KEY not in text
