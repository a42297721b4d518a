"""Rate limits through the admin API and /metrics (issue 13 point 2): set on keys and
projects (audited), seen with their current window, answered 429 with OpenAI's headers,
and counted by decision reason. The request time is an injectable clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_deployment import Deployment, deployed
from proxy_helpers import chat
from shipped_policy import ShippedPolicies

from proxy.config import default_policy_dir

ADMIN = "admin-rate-limits-token"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, shipped_policies: ShippedPolicies, clock: Clock
) -> Iterator[Deployment]:
    with deployed(
        tmp_path_factory.mktemp("rates"),
        compile_policy=shipped_policies.loader,
        clock=clock,
        admin_token=ADMIN,
    ) as d:
        yield d


@pytest.fixture(scope="module")
def client(limited: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.url, timeout=30) as http:
        yield http


def _admin(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    response = client.request(
        method, f"/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def _chat(client: httpx.Client, token: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json=chat("mock-model", max_tokens=8),
        headers={"Authorization": f"Bearer {token}"},
    )


def test_admin_api_sets_and_shows_rate_limits(client: httpx.Client, clock: Clock) -> None:
    _admin(client, "POST", "/projects", {"id": "rated", "organization": "default"})
    created = _admin(client, "POST", "/keys", {"project": "rated", "rpm": 2, "tpm": 100000})
    assert (created["rpm"], created["tpm"], created["max_parallel"]) == (2, 100000, None)
    token, key_id = created["token"], created["id"]
    first, second, third = (_chat(client, token) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["retry-after"] == "60"
    assert third.headers["x-ratelimit-reset-requests"] == "1m0s"
    shown = _admin(client, "GET", f"/keys/{key_id}")
    assert shown["rate_window"]["requests"] == 2 and shown["rate_window"]["parallel"] == 0
    assert shown["project_rate_window"] == {
        "requests": 0,
        "tokens": 0,
        "parallel": 0,
        "resets_in_seconds": None,
    }

    raised = _admin(client, "PUT", f"/keys/{key_id}/rate-limits", {"rpm": 3})
    assert (raised["rpm"], raised["tpm"]) == (3, None)
    # The answer to the change shows the key as GET does: the window it now applies to
    # (it said `rate_window: null`, as if nothing had been counted).
    assert raised["rate_window"] == shown["rate_window"]
    assert raised["project_rate_window"] == shown["project_rate_window"]
    assert _chat(client, token).status_code == 200
    project = _admin(client, "PUT", "/projects/rated/rate-limits", {"max_parallel": 2})
    assert project["max_parallel"] == 2
    entries = _admin(client, "GET", f"/audit?object=key:{key_id}")
    changes = [e for e in entries if e["action"] == "set_rate_limits"]
    assert changes[0]["before"] == {"rpm": 2, "tpm": 100000}
    assert changes[0]["after"] == {"rpm": 3, "tpm": None}
    assert any(
        e["action"] == "set_rate_limits" for e in _admin(client, "GET", "/audit?object=rated")
    )
    bad = client.put(
        f"/admin/keys/{key_id}/rate-limits",
        json={"rpm": -1},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert bad.status_code == 400 and "rpm: `-1` is not a whole number" in bad.json()["message"]

    clock.advance(60)  # the window moves: room again
    assert _chat(client, token).status_code == 200


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"rpm": "abc"}, "`rpm`: Expected `int | null`, got `str`"),
        ({"rpm": 1.5}, "`rpm`: Expected `int | null`, got `float`"),
        ({"rmp": 5}, "unknown field `rmp`"),
        ([], "Expected `object`, got `array`"),
    ],
)
def test_a_malformed_admin_body_names_the_field(client: httpx.Client, body: Any, said: str) -> None:
    """Litestar's own answer was "Validation failed for PUT /admin/...", naming neither
    the field nor what it wants; the details it keeps aside are now in the message."""
    project = "/admin/projects/default/rate-limits"
    for method, path in (("PUT", project), ("POST", "/admin/keys")):
        bad = client.request(method, path, json=body, headers={"Authorization": f"Bearer {ADMIN}"})
        assert bad.status_code == 400
        message = bad.json()["message"]
        assert message.startswith(f"Validation failed for {method} {path}: "), message
        assert said in message, message


def test_metrics_count_refusals_by_reason(client: httpx.Client) -> None:
    _admin(client, "POST", "/projects", {"id": "counted", "organization": "default"})
    created = _admin(client, "POST", "/keys", {"project": "counted", "rpm": 1})
    assert _chat(client, created["token"]).status_code == 200
    assert _chat(client, created["token"]).status_code == 429
    assert _chat(client, "llmgtwy_not-a-key").status_code == 401
    text = client.get("/metrics").text
    assert "# TYPE gateway_denials_total counter" in text
    counts = {
        line.split("}")[0] + "}": int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_denials_total{")
    }
    assert counts['gateway_denials_total{reason="rate_limit_requests"}'] >= 1
    assert counts['gateway_denials_total{reason="unauthorized"}'] >= 1
    assert created["token"] not in text


CEILINGS = """
rule_sets:
  - description: every key of the gateway, whatever the store says
    applies_to: {all_keys: true}
    rate_limits: {rpm: 2}
"""


def test_rate_limits_set_in_a_policy_file_are_enforced(
    tmp_path_factory: pytest.TempPathFactory, clock: Clock
) -> None:
    """`rate_limits:` in a *.iam.yaml file: the policy lowers the store's limits (here a
    key with none) and the store enforces what the decision says."""
    policies = tmp_path_factory.mktemp("policies")
    for source in Path(default_policy_dir()).iterdir():
        if source.is_file():
            shutil.copy(source, policies / source.name)
    (policies / "ceilings.iam.yaml").write_text(CEILINGS)
    root = tmp_path_factory.mktemp("ceilings")
    with (
        deployed(root, clock=clock, admin_token=ADMIN, policy_dir=str(policies)) as running,
        httpx.Client(base_url=running.url, timeout=30) as http,
    ):
        created = _admin(http, "POST", "/keys", {"project": "default"})
        assert created["rpm"] is None  # no limit in the store
        answers = [_chat(http, created["token"]) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["x-ratelimit-limit-requests"] == "2"
        assert (
            answers[2]
            .json()["message"]
            .startswith(
                f"Rate limit reached for API key {created['id']} on requests per min (RPM): "
                "Limit 2, Used 2"
            )
        )


def test_every_answer_of_a_rate_limited_key_carries_the_headers(client: httpx.Client) -> None:
    _admin(client, "POST", "/projects", {"id": "headers", "organization": "default"})
    created = _admin(client, "POST", "/keys", {"project": "headers", "rpm": 5, "tpm": 9000})
    token = created["token"]
    _admin(
        client, "POST", f"/keys/{created['id']}/iam", {"type": "deny_models", "values": ["gpt-4"]}
    )
    assert _chat(client, token).status_code == 200
    denied = client.post(
        "/v1/chat/completions",
        json=chat("gpt-4"),
        headers={"Authorization": f"Bearer {token}"},
    )
    models = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    for answer in (denied, models):  # answers that never reached admission
        assert answer.headers["x-ratelimit-limit-requests"] == "5"
        assert answer.headers["x-ratelimit-remaining-requests"] == "4"
        assert answer.headers["x-ratelimit-limit-tokens"] == "9000"
    assert denied.status_code == 403 and models.status_code == 200
    plain = _admin(client, "POST", "/keys", {"project": "default"})
    answer = _chat(client, plain["token"])
    assert not any(name.startswith("x-ratelimit") for name in answer.headers)


def test_a_tpm_refusal_never_says_to_retry_before_the_request_fits(
    client: httpx.Client, clock: Clock
) -> None:
    """Retry-After for tokens said when the window's oldest request leaves; when that
    one holds few tokens and a later one most, the retry came too early and was refused
    again. It is now when every token now counted has left (the newest request leaves):
    never before the request fits, never 0, and the message says the same."""
    created = _admin(client, "POST", "/keys", {"project": "default", "tpm": 10000})
    headers = {"Authorization": f"Bearer {created['token']}"}

    def send(content: str, max_tokens: int) -> httpx.Response:
        body = chat("mock-model", content, max_tokens=max_tokens)
        return client.post("/v1/chat/completions", json=body, headers=headers)

    small = send("hi", 8)  # t = 0: a few tokens
    assert small.status_code == 200, small.text
    clock.advance(30)
    large = send(" ".join(["word"] * 1500), 8)  # t = 30: most of the window's tokens
    assert large.status_code == 200, large.text
    assert large.json()["usage"]["total_tokens"] > 1000
    clock.advance(10)  # t = 40
    # Its bound (the prompt's bytes + 32, plus max_tokens) fits the tpm only once the
    # large request's tokens have left, at t = 90: 50 s from now.
    refused = send("hi", 9900)
    assert refused.status_code == 429, refused.text
    wait = int(refused.headers["retry-after"])
    # At least until t = 90; at most a whole window (the store may report only its
    # oldest request, not the newest).
    assert 50 <= wait <= 60
    assert refused.json()["message"].endswith(f"Please try again in {wait}s.")
    clock.advance(20)  # t = 60: the small one left (the old Retry-After), not enough
    again = send("hi", 9900)
    assert again.status_code == 429
    assert 30 <= int(again.headers["retry-after"]) <= 60  # never 0, never before it fits
    clock.advance(wait - 20)  # t = 40 + the first Retry-After: now it fits
    fits = send("hi", 9900)
    assert fits.status_code == 200, fits.text
