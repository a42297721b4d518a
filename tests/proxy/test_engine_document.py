"""The engine's input made from a record's prebuilt members (`engine_document`) is the
input document's own conversion (`engine_input(build_input(...))`), member for member
and in the same order, for every kind of record; the members are made once per record
read, and a decision leaves them as they were."""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from proxy.budgets import Budget
from proxy.documents import PeriodBudgetDocument, RequestDocument, engine_input
from proxy.input_document import (
    build_input,
    engine_document,
    gateway_info,
    key_input_parts,
    with_input_parts,
)
from proxy.key_cache import KeyCachingStore
from proxy.policy import engine_loader
from proxy.store.base import (
    ApiKey,
    IamRule,
    KeyContext,
    Organization,
    Project,
    ProjectRule,
    RateLimits,
    Store,
)

REPO = Path(__file__).resolve().parents[2]
REQUEST = RequestDocument(
    operation="chat.completions",
    token_present=True,
    model="mock-model",
    max_tokens=64,
    time="2026-11-27T10:00:00Z",
    client_ip="127.0.0.1",
)
GATEWAY = gateway_info(["openai"])
KEY_WINDOW = PeriodBudgetDocument(
    amount=Decimal("1000000000.00"),
    period="day",
    usage=Decimal("250.50"),
    reserved=Decimal("0.0125"),
    window_start="2026-11-27T00:00:00Z",
    resets_at="2026-11-28T00:00:00Z",
)
PROJECT_WINDOW = PeriodBudgetDocument(
    amount=Decimal("5.0"),
    period="hour",
    usage=Decimal(0),
    window_start="2026-11-27T10:00:00Z",
    resets_at="2026-11-27T11:00:00Z",
)


def _plain() -> KeyContext:
    key = ApiKey(
        id="key_1",
        token_hash="h",
        display="llmgtwy_abcd…wxyz",
        project_id="p",
        status="active",
        usage_limit=None,
        usage=Decimal("250.50"),
        description="",
        created_at="2026-11-27T10:00:00Z",
    )
    return KeyContext(
        key=key,
        reserved=Decimal(0),
        rules=(),
        project=Project(id="p", organization_id="o"),
        organization=Organization(id="o", credits=Decimal("10.00")),
        credits_reserved=Decimal(0),
    )


def _every_control() -> KeyContext:
    plain = _plain()
    key = msgspec.structs.replace(
        plain.key,
        usage_limit=Decimal("1000000000.00"),
        expires_at="2200-01-01T00:00:00Z",
        budget=Budget(amount=Decimal("1000000000.00"), period="day"),
        rate_limits=RateLimits(rpm=1_000_000_000, tpm=1_000_000_000_000, max_parallel=100_000),
    )
    project = Project(
        id="p",
        organization_id="o",
        mode="api-keys",
        provider_keys={"openai": {"env": "OPENAI_KEY"}, "anthropic": {"value": "sk-x"}},
        budget=Budget(amount=Decimal("5.0"), period="hour"),
        rate_limits=RateLimits(tpm=10_000),
    )
    return KeyContext(
        key=key,
        reserved=Decimal("0.25"),
        rules=(
            IamRule(id="r1", key_id="key_1", type="deny_models", values=("gpt-4*",)),
            IamRule(
                id="r2", key_id="key_1", type="allow_providers", values=("mock",), status="inactive"
            ),
        ),
        project=project,
        organization=Organization(id="o", credits=Decimal("10.00")),
        credits_reserved=Decimal("1.50"),
        project_rules=(
            ProjectRule(id="pr1", project_id="p", type="deny_operations", values=("embeddings",)),
        ),
        token_expires_at="2026-11-27T10:05:00Z",
    )


CONTEXTS = {"plain": _plain, "every control": _every_control}
# Amounts whose text `str` of the Decimal gives in exponent form, as `engine_input` does.
ODD_WINDOW = msgspec.structs.replace(
    KEY_WINDOW, amount=Decimal("1E+3"), usage=Decimal("0.00000012"), reserved=Decimal("-0")
)
WINDOWS = {
    "no window": (None, None),
    "key window": (KEY_WINDOW, None),
    "both windows": (KEY_WINDOW, PROJECT_WINDOW),
    "odd amounts": (ODD_WINDOW, ODD_WINDOW),
}


@pytest.mark.parametrize("record", CONTEXTS)
@pytest.mark.parametrize("windows", WINDOWS)
@pytest.mark.parametrize("prebuilt", [True, False])
def test_the_engine_document_is_the_input_documents_conversion(
    record: str, windows: str, prebuilt: bool
) -> None:
    context = CONTEXTS[record]()
    if prebuilt:
        context = with_input_parts(context)
    key_window, project_window = WINDOWS[windows]
    made = engine_document(
        REQUEST, context, msgspec.to_builtins(GATEWAY), key_window, project_window
    )
    converted = engine_input(
        build_input(REQUEST, context, GATEWAY, key_budget=key_window, project_budget=project_window)
    )
    assert made == converted
    # The same members in the same order (a policy may iterate an object).
    assert msgspec.json.encode(made) == msgspec.json.encode(converted)


def test_an_unknown_token_has_no_record_members() -> None:
    made = engine_document(REQUEST, None, msgspec.to_builtins(GATEWAY))
    converted = engine_input(build_input(REQUEST, None, GATEWAY))
    assert msgspec.json.encode(made) == msgspec.json.encode(converted)


def test_a_budget_window_goes_into_a_copy_of_the_records_key() -> None:
    context = with_input_parts(_every_control())
    assert context.input_parts is not None
    before = copy.deepcopy(context.input_parts)
    made = engine_document(
        REQUEST, context, msgspec.to_builtins(GATEWAY), KEY_WINDOW, PROJECT_WINDOW
    )
    assert made["key"]["period_budget"]["usage"] == "250.50"
    assert made["project"]["period_budget"]["amount"] == "5.0"
    assert context.input_parts == before
    assert context.input_parts.key["period_budget"] is None


def test_a_decision_leaves_the_records_members_as_they_were() -> None:
    """The members are shared by every request the record serves: the engine must not
    change them (the shipped policy, on the every-control record, allowed and refused)."""
    catalog = msgspec.yaml.decode((REPO / "policies" / "catalog.yaml").read_bytes())
    decide = engine_loader(str(REPO / "policies"), {"catalog": catalog})
    context = with_input_parts(_every_control())
    parts = context.input_parts
    assert parts is not None
    before = copy.deepcopy(parts)
    gateway: dict[str, Any] = msgspec.to_builtins(GATEWAY)
    for request in (REQUEST, msgspec.structs.replace(REQUEST, model="gpt-4o")):
        value = decide(engine_document(request, context, gateway, KEY_WINDOW, PROJECT_WINDOW))
        assert isinstance(value, dict) and "allow" in value
    assert parts == before


class _OneRecord:
    """A store holding one key whose usage another process changes."""

    def __init__(self) -> None:
        self.usage = Decimal("1.00")

    async def key_context(self, token_hash: str) -> KeyContext | None:
        context = _every_control()
        return msgspec.structs.replace(
            context, key=msgspec.structs.replace(context.key, usage=self.usage)
        )


def test_the_key_cache_makes_the_members_once_per_read_from_that_read() -> None:
    inner = _OneRecord()
    cache = KeyCachingStore(cast(Store, inner), ttl=0)

    async def scenario() -> None:
        first = await cache.key_context("h")
        assert first is not None and first.input_parts is not None
        assert first.input_parts == key_input_parts(first)
        assert first.input_parts.key["usage"] == "1.00"
        inner.usage = Decimal("2.50")
        second = await cache.key_context("h")
        assert second is not None and second.input_parts is not None
        assert second.input_parts.key["usage"] == "2.50"

    asyncio.run(scenario())
