"""The reservation's bound through the real server: what is forwarded, what is refused,
what a burst of many-choice requests can spend, and a non-JSON upstream answer."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
from proxy_deployment import Deployment
from proxy_helpers import Tenant, auth, chat, documented, make_tenant

from proxy.catalog import ModelPrice
from proxy.cost_bound import cost_bound


def _usage(deployment: Deployment, tenant: Tenant) -> Decimal:
    usage: Decimal = deployment.admin(deployment.admin.store.get_key(tenant.key.id)).usage
    return usage


def _post(deployment: Deployment, tenant: Tenant, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{deployment.url}/v1/chat/completions",
        json=body,
        headers=auth(tenant.token, "bearer"),
        timeout=30,
    )


def test_the_default_max_tokens_is_forwarded(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    assert _post(deployment, tenant, chat()).status_code == 200
    # The reservation assumed the default: the provider is held to it.
    assert deployment.upstream.requests[-1]["body"]["max_tokens"] == 4096
    assert _post(deployment, tenant, chat(max_completion_tokens=50)).status_code == 200
    forwarded = deployment.upstream.requests[-1]["body"]
    assert forwarded["max_completion_tokens"] == 50 and "max_tokens" not in forwarded


def test_an_image_without_a_catalog_bound_is_refused(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    image = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    response = _post(deployment, tenant, chat(content=image))
    assert response.status_code == 400
    message = response.json()["message"]
    assert "`messages[0].content[0]`" in message and "`image_input_tokens`" in message
    # The mock model's catalog entry sets the field: there the same request is served.
    assert _post(deployment, tenant, chat("mock-model", content=image)).status_code == 200
    assert _usage(deployment, tenant) > 0


def test_many_choices_cannot_spend_past_the_limit(deployment: Deployment) -> None:
    """The issue's measurement: `n: 8` requests on a key sized for five of them.
    Whatever the interleaving, usage ends at most one request's bound over the limit."""
    body = chat(n=8, max_tokens=100)
    gpt4 = ModelPrice(model_id="gpt-4", input_price=Decimal(30), output_price=Decimal(60))
    one_bound = cost_bound("chat.completions", body, gpt4, 4096).amount
    # What the test upstream bills for one such request: 5 prompt, 7 x 8 completion.
    one_cost = gpt4.cost(5, 7 * 8)
    limit = one_cost * 5
    tenant = make_tenant(deployment.admin, usage_limit=str(limit))

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{deployment.url}/v1/chat/completions",
                        json=body,
                        headers=auth(tenant.token, "bearer"),
                    )
                    for _ in range(40)
                )
            )

    answers = asyncio.run(burst())
    assert all(r.status_code in (200, 401, 429) for r in answers)
    assert _usage(deployment, tenant) <= limit + one_bound


def test_an_upstream_answer_that_is_not_json_is_502_and_free(deployment: Deployment) -> None:
    tenant = make_tenant(deployment.admin)
    response = _post(deployment, tenant, chat(content="notjson"))
    assert response.status_code == 502
    message = "Upstream provider openai did not return a JSON object"
    assert response.json() == documented(502, message)
    assert _usage(deployment, tenant) == 0
