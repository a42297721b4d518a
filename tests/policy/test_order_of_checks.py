"""The order of checks (contract section 3): with checks k..8 all failing, check k answers."""

from __future__ import annotations

from typing import Any

import pytest
from policy_harness import build_input, decide, engine_with, merged

# One way to fail each check, in the contract's order, with the answer it gives.
FAILURES: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "1 no token",
        {"request": {"token_present": False}},
        401,
        "Unauthorized: No API key provided. Expected 'Authorization: Bearer your-api-token' "
        "header or 'x-api-key: your-api-token' header",
    ),
    (
        "2 inactive key",
        {"key": {"status": "inactive"}},
        401,
        "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted "
        "or disabled. Go to the LLMGateway 'API Keys' page to generate a new token.",
    ),
    (
        "3 usage limit",
        {"key": {"usage_limit": "0"}},
        401,
        "Unauthorized: LLMGateway API key reached its usage limit.",
    ),
    (
        "4 archived project",
        {"project": {"status": "deleted"}},
        410,
        "Project has been archived and is no longer accessible",
    ),
    (
        "5 broken body",
        {"request": {"body_error": "Invalid JSON in request body"}},
        400,
        "Invalid JSON in request body",
    ),
    (
        "6 unknown model",
        {"request": {"model": "no-such-model"}},
        400,
        "Unsupported model: no-such-model",
    ),
    (
        "7 IAM denies",
        {
            "key": {
                "iam_rules": [
                    {"id": "r", "type": "deny_operations", "values": ["chat.completions"]}
                ]
            }
        },
        403,
        "Access denied: Operation chat.completions is in the denied operations list",
    ),
    (
        "8 no provider key",
        {"project": {"mode": "api-keys", "provider_keys": []}},
        400,
        "No provider key set for any of the providers that support model gpt-4. Please add the "
        "provider key in the settings or switch the project mode to credits or hybrid.",
    ),
]


@pytest.mark.parametrize("first", range(len(FAILURES)), ids=[f[0] for f in FAILURES])
def test_the_first_failing_check_answers(first: int) -> None:
    override: dict[str, Any] = {}
    for _, failure, _, _ in FAILURES[first:]:
        override = merged(override, failure)
    decision = decide(engine_with(), build_input(override))
    _, _, status, message = FAILURES[first]
    assert (decision.allow, decision.status, decision.message) == (False, status, message)


def test_credits_are_checked_last() -> None:
    """402 only once a provider was found: 8a (no provider) precedes 8b (credits)."""
    override = {"project": {"mode": "credits"}, "organization": {"credits": "0"}}
    assert decide(engine_with(), build_input(override)).status == 402
    no_provider = merged(override, {"request": {"model": "claude-sonnet-4"}})
    assert decide(engine_with(), build_input(no_provider)).status == 400
