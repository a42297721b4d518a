"""Small pure pieces: the input document, provider routing, metrics text, mock usage,
reading a whole answer's usage."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from proxy.api_families import whole_usage
from proxy.catalog import Catalog, CatalogProvider, ModelPrice
from proxy.config import GatewayConfig, ProviderConfig
from proxy.documents import Decision, RequestDocument
from proxy.gateway import _whole_answer
from proxy.input_document import build_input, gateway_info
from proxy.metrics import Metrics
from proxy.mock_provider import MockProvider, mock_reply
from proxy.providers import ProviderDirectory, ProviderProblem
from proxy.store.base import ApiKey, IamRule, KeyContext, Organization, Project
from proxy.usage import TokenUsage, chat_usage

REQUEST = RequestDocument(
    operation="chat.completions",
    token_present=True,
    model="gpt-4",
    time="2026-11-27T10:00:00Z",
    client_ip="127.0.0.1",
)


def _context(**project: object) -> KeyContext:
    key = ApiKey(
        id="key_1",
        token_hash="h",
        display="llmgtwy_abcd…wxyz",
        project_id="p",
        status="active",
        usage_limit=Decimal("1000.00"),
        usage=Decimal("250.50"),
        description="",
        created_at="2026-11-27T10:00:00Z",
    )
    rule = IamRule(id="r1", key_id="key_1", type="deny_models", values=("gpt-4",))
    return KeyContext(
        key=key,
        reserved=Decimal("0.25"),
        rules=(rule,),
        project=Project(id="p", organization_id="o", **project),  # type: ignore[arg-type]
        organization=Organization(id="o", credits=Decimal("10.00")),
        credits_reserved=Decimal("1.50"),
    )


def test_input_for_unknown_token_has_no_key() -> None:
    document = build_input(REQUEST, None, gateway_info(()))
    assert document.key is None and document.project is None and document.organization is None
    assert document.gateway.credentialed_providers == ("mock",)


def test_input_gives_settled_figures_and_in_flight_reservations_apart() -> None:
    context = _context(provider_keys={"openai": {"value": "sk-x"}}, mode="api-keys")
    document = build_input(REQUEST, context, gateway_info(["openai"]))
    assert document.key is not None and document.organization is not None
    assert document.project is not None
    # Settled figures decide the documented 401 / 402; reservations only make requests wait.
    assert (document.key.usage, document.key.reserved) == (Decimal("250.50"), Decimal("0.25"))
    assert document.key.usage_limit == Decimal("1000.00")
    assert document.organization.credits == Decimal("10.00")
    assert document.organization.credits_reserved == Decimal("1.50")
    assert document.project.provider_keys == ("openai",)  # names only, never secrets
    assert document.project.mode == "api-keys"
    assert document.key.iam_rules[0].values == ("gpt-4",)
    assert document.gateway.credentialed_providers == ("mock", "openai")


CATALOG = Catalog(
    providers={"openai": CatalogProvider(base_url="https://catalog.example/v1")},
    models={},
)


def _decision(provider: str, billing: str) -> Decision:
    return Decision(
        allow=True,
        status=200,
        model="gpt-4",
        provider=provider,
        provider_model_id="gpt-4",
        billing=billing,  # type: ignore[arg-type]
    )


def test_routes_gateway_and_project_credentials() -> None:
    config = GatewayConfig(
        providers=(ProviderConfig(id="openai", base_url="http://up/v1/", api_key_env="GW_KEY"),)
    )
    directory = ProviderDirectory(config, {"GW_KEY": "sk-gateway", "PROJ_KEY": "sk-project"})
    assert directory.credentialed == ("mock", "openai")
    project = Project(id="p", organization_id="o", provider_keys={"openai": {"env": "PROJ_KEY"}})
    credits = directory.route(_decision("openai", "credits"), project, "embeddings", CATALOG)
    assert (credits.url, credits.api_key) == ("http://up/v1/embeddings", "sk-gateway")
    own = directory.route(_decision("openai", "provider-key"), project, "chat.completions", CATALOG)
    assert own.api_key == "sk-project"
    mock = directory.route(_decision("mock", "credits"), project, "chat.completions", CATALOG)
    assert mock.url is None and mock.api_key is None


def test_catalog_base_url_is_the_fallback_and_missing_secrets_are_named() -> None:
    directory = ProviderDirectory(GatewayConfig(), {})
    assert directory.credentialed == ("mock",)
    project = Project(id="p", organization_id="o", provider_keys={"openai": {"env": "UNSET"}})
    route = directory.route(_decision("openai", "credits"), project, "chat.completions", CATALOG)
    assert route.url == "https://catalog.example/v1/chat/completions"
    with pytest.raises(ProviderProblem, match="set the environment variable UNSET"):
        directory.route(_decision("openai", "provider-key"), project, "completions", CATALOG)
    with pytest.raises(ProviderProblem, match="Provider nowhere has no base_url"):
        directory.route(_decision("nowhere", "credits"), project, "completions", CATALOG)


def test_price_is_exact() -> None:
    price = ModelPrice(model_id="m", input_price=Decimal("30.00"), output_price=Decimal("60.00"))
    assert price.cost(5, 7) == Decimal("0.00057")


def test_metrics_text() -> None:
    metrics = Metrics()
    metrics.request("chat.completions", 200)
    metrics.request("chat.completions", 200)
    metrics.decision_latency(0.0003)
    metrics.upstream_latency("openai", 0.2)
    metrics.usage("openai", 'we"ird', 5, 7, Decimal("0.00057"))
    text = metrics.render({"gateway_up": ("Up.", 1.0)})
    assert 'gateway_requests_total{operation="chat.completions",status="200"} 2' in text
    assert 'gateway_decision_seconds_bucket{le="0.0005"} 1' in text
    assert 'gateway_decision_seconds_bucket{le="+Inf"} 1' in text
    assert 'gateway_upstream_seconds_bucket{provider="openai",le="0.1"} 0' in text
    assert 'gateway_upstream_seconds_bucket{provider="openai",le="0.25"} 1' in text
    assert 'gateway_tokens_total{provider="openai",model="we\\"ird",kind="completion"} 7' in text
    assert 'gateway_cost_usd_total{provider="openai",model="we\\"ird"} 0.00057' in text
    assert "gateway_up 1.0" in text and text.endswith("\n")


def test_mock_usage_is_deterministic() -> None:
    payload = {"model": "mock-model", "messages": [{"role": "user", "content": "a b c"}]}

    async def run() -> tuple[bytes, list[bytes]]:
        mock = MockProvider()
        whole = await (await mock.send("chat.completions", payload)).read()
        streamed = await mock.send(
            "chat.completions",
            {**payload, "stream": True, "stream_options": {"include_usage": True}},
        )
        return whole, [chunk async for chunk in streamed.chunks()]

    whole, chunks = asyncio.run(run())
    completion = len(mock_reply("chat.completions", payload).split())
    assert f'"usage":{{"prompt_tokens":3,"completion_tokens":{completion}'.encode() in whole
    assert len(chunks) == completion + 2  # one per word, the usage chunk, [DONE]
    assert b'"choices":[],"usage":{"prompt_tokens":3' in chunks[-2]
    assert chunks[-1] == b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    ("oldest", "newest", "now", "expected"),
    [
        # The oldest leaves at 60 (20 s), the newest, holding most tokens, at 90: the
        # request fits only then, so 50 s, not 20.
        (0.0, 30.0, 40.0, "50"),
        # A store reporting only its oldest request: a whole window, never less.
        (0.0, None, 40.0, "60"),
        # A newest request about to leave: at least 1 s, never 0.
        (0.0, 0.0, 59.5, "1"),
    ],
)
def test_a_tokens_refusal_retry_after_is_never_before_the_request_fits(
    oldest: float, newest: float | None, now: float, expected: str
) -> None:
    from proxy_helpers import rate_header_pairs as rate_headers

    from proxy.store.base import RateCount, RateLimits, RateState

    window = RateCount(requests=2, tokens=90, parallel=0, oldest=oldest, newest=newest)
    headers = dict(
        rate_headers(
            RateLimits(tpm=100),
            RateLimits(),
            RateState(key=window),
            now,
            refused="rate_limit_tokens",
            request_tokens=50,
        )
    )
    assert headers["retry-after"] == expected


@pytest.mark.parametrize(
    ("requests", "tokens", "oldest", "now"),
    [
        (3, 120, 10.0, 40.0),  # whole seconds left: "30s"
        (3, 120, 10.25, 40.0),  # a fraction: "30.25s"
        (12, 5000, 0.0, 59.9),  # over both ceilings: remaining 0, "100ms"
        (0, 0, None, 40.0),  # an empty window: "0s"
    ],
)
def test_the_admitted_key_only_headers_match_the_general_path(
    requests: int, tokens: int, oldest: float | None, now: float
) -> None:
    """A key with `rpm` and `tpm` works out its window's reset once for both headers;
    a project window with no rpm/tpm beside it must change nothing: same lines, same
    order, same values."""
    from proxy_helpers import rate_header_pairs as rate_headers

    from proxy.store.base import RateCount, RateLimits, RateState

    key = RateCount(requests=requests, tokens=tokens, parallel=1, oldest=oldest, newest=oldest)
    limits = RateLimits(rpm=10, tpm=1000, max_parallel=4)
    short = rate_headers(limits, RateLimits(), RateState(key=key), now)
    project = RateCount(requests=0, tokens=0, parallel=0)
    general = rate_headers(
        limits, RateLimits(max_parallel=9), RateState(key=key, project=project), now
    )
    assert short == general
    assert [name for name, _ in short] == [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ]
    assert short[1][1] == str(max(0, 10 - requests))
    assert short[4][1] == str(max(0, 1000 - tokens))


@pytest.mark.parametrize("refused", [None, "rate_limit_requests", "rate_limit_tokens"])
def test_the_sent_rate_header_lines_are_the_names_lower_cased_and_encoded(
    refused: str | None,
) -> None:
    """The whole-reply sender encodes the rate headers' names once, ahead: the lines it
    sends are still exactly each (name, value) lower-cased and latin-1 encoded, and
    every name `rate_lines` gives (refusals' too) is one of those encoded ahead."""
    from typing import Any, cast

    from proxy_helpers import rate_header_pairs as rate_headers

    from proxy.api_route import _send_whole
    from proxy.gateway import Reply
    from proxy.rate_headers import HEADER_NAMES
    from proxy.store.base import RateCount, RateLimits, RateState

    window = RateCount(requests=10, tokens=990, parallel=1, oldest=10.5, newest=20.0)
    headers = rate_headers(
        RateLimits(rpm=10, tpm=1000),
        RateLimits(),
        RateState(key=window),
        40.0,
        refused=cast(Any, refused),
        request_tokens=2000,
    )
    assert {name for name, _ in headers} <= set(HEADER_NAMES)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    reply = Reply(status=429 if refused else 200, body=b"{}", headers=(("X-Other", "v"), *headers))
    asyncio.run(_send_whole(reply, send))
    expected = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers
    ]
    assert sent[0]["headers"][: len(expected)] == expected
    assert sent[0]["headers"][len(expected) :] == [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
    ]


@pytest.mark.parametrize(
    "content",
    [b"notjson", b"[1, 2]", b'"text"', b"", b'{"usage": 1', b'{"usage": "\xff"}', b'{"a": 1} x'],
)
def test_an_answer_that_is_not_a_json_object_is_not_read(content: bytes) -> None:
    assert _whole_answer(content) is None


def test_a_whole_answer_gives_its_usage_and_skips_the_rest() -> None:
    content = (
        b'{"id": "c1", "choices": [{"message": {"content": "hi \\u00e9"}}], '
        b'"usage": {"prompt_tokens": 7, "completion_tokens": 3, '
        b'"prompt_tokens_details": {"cached_tokens": 9}}}'
    )
    answer = _whole_answer(content)
    assert answer is not None
    assert whole_usage("chat.completions", answer.usage) == TokenUsage(
        prompt_tokens=7, completion_tokens=3, cache_read_tokens=7
    )
    # The last of repeated members counts, as a decoded dict's would.
    repeated = _whole_answer(b'{"usage": {"prompt_tokens": 1}, "usage": {"prompt_tokens": 2}}')
    assert repeated is not None
    assert whole_usage("chat.completions", repeated.usage) == TokenUsage(prompt_tokens=2)
    answer = _whole_answer(b'{"choices": []}')
    assert answer is not None and whole_usage("chat.completions", answer.usage) is None


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": True, "completion_tokens": 4}, TokenUsage(completion_tokens=4)),
        ({"prompt_tokens": 5, "completion_tokens": -2}, TokenUsage(prompt_tokens=5)),
        ({"prompt_tokens": 5, "completion_tokens": 1.5}, TokenUsage(prompt_tokens=5)),
        ({"prompt_tokens": 5, "prompt_tokens_details": None}, TokenUsage(prompt_tokens=5)),
        ({"prompt_tokens": "5", "completion_tokens": 1}, None),
        ({"completion_tokens": 1}, None),
        (None, None),
    ],
)
def test_chat_usage_counts_only_positive_integers(
    usage: object, expected: TokenUsage | None
) -> None:
    assert chat_usage(usage) == expected
