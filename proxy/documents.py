"""The two documents exchanged between the proxy and the policy.

`InputDocument` is what the proxy builds per request (docs/architecture.md §3,
`schemas/input.schema.json`); `Decision` is what `data.gateway.decision`
evaluates to (§4, `schemas/decision.schema.json`).

The policy engine takes plain JSON-like values, so the proxy passes
`engine_input(document)` (Decimals become decimal strings, as in
`input_value(document)`, the JSON form) and reads the policy's answer back with
`decision_from_value(value)`.
Money travels as decimal strings and the policy compares it with `to_number`,
which is exact in this engine: a float never touches a price or a limit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "BillingMode",
    "CatalogDocument",
    "CatalogModel",
    "CatalogProvider",
    "Decision",
    "DecisionRateLimits",
    "GatewayInfo",
    "IamRuleDocument",
    "InputDocument",
    "KeyDocument",
    "KeyStatus",
    "Operation",
    "OrganizationDocument",
    "PeriodBudgetDocument",
    "ProjectDocument",
    "ProjectMode",
    "ProjectStatus",
    "ProviderOffer",
    "RateLimitValues",
    "RateLimitsDocument",
    "Reason",
    "RequestDocument",
    "RuleStatus",
    "RuleType",
    "StoredBudgetDocument",
    "decision_from_value",
    "engine_input",
    "input_value",
]

Operation = Literal[
    "chat.completions",
    "completions",
    "embeddings",
    "models.list",
    "responses",
    "messages",
    "messages.count_tokens",
]
KeyStatus = Literal["active", "inactive", "deleted"]
ProjectStatus = Literal["active", "deleted"]
ProjectMode = Literal["api-keys", "credits", "hybrid"]
RuleType = Literal[
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "allow_operations",
    "deny_operations",
]
RuleStatus = Literal["active", "inactive"]
BillingMode = Literal["provider-key", "credits"]

# A moment as the proxy writes it: RFC 3339, UTC, whole seconds (`2027-01-01T00:00:00Z`).
Timestamp = Annotated[
    str,
    msgspec.Meta(
        description="RFC 3339 in UTC to the second, e.g. `2027-01-01T00:00:00Z`.",
        extra_json_schema={"format": "date-time"},
    ),
]

# Money: a non-negative-or-negative USD amount, exact, carried as a decimal string.
Money = Annotated[
    Decimal,
    msgspec.Meta(description='USD amount as a decimal string, e.g. "250.50".'),
]


class IamRuleDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One IAM rule as the policy sees it (from the key store or the project)."""

    id: str
    """Stable rule id; it appears as `rule_id` in the decision's reasons."""
    type: RuleType
    """Which of the contract's six rule types this is."""
    values: tuple[str, ...]
    """Model ids (globs such as `gpt-4*` allowed), provider ids or operation ids."""
    status: RuleStatus = "active"
    """An `inactive` rule is ignored by the policy."""


class RequestDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the client asked for, as far as the policy needs to know."""

    operation: Operation
    """The operation the route maps to: the OpenAI-compatible `chat.completions`,
    `completions`, `embeddings`, `models.list` and `responses` (`/v1/responses`), or the
    Anthropic `messages` (`/v1/messages`) and `messages.count_tokens`
    (`/v1/messages/count_tokens`, free; IAM operation rules name it `messages`)."""
    token_present: bool
    """True when a non-empty token came in `Authorization: Bearer` or `x-api-key` (check 1)."""
    model: str | None = None
    """The body's `model` as sent (`gpt-4` or `openai/gpt-4`); None for `models.list` or
    when the body has no usable `model`."""
    body_error: str | None = None
    """A message naming the problem with the body (check 5), or None when the body is fine.
    The proxy parses; the policy decides where in the order of checks this answers."""
    max_tokens: int | None = None
    """The body's completion limit when given: `max_tokens` (or `max_completion_tokens`),
    `max_output_tokens` on `responses`."""
    stream: bool = False
    """True when the client asked for a streamed response."""
    time: Timestamp
    """When the request arrived, RFC 3339 in UTC (e.g. `2026-11-27T10:00:00Z`); policies
    read the clock only through this field."""
    client_ip: str
    """The client's IP address as the proxy saw it."""
    token_bound: int | None = None
    """The most tokens (prompt + completion) the request can use (proxy/cost_bound.py),
    the amount its rate windows reserve; None until known: the bound depends on the
    provider the decision chooses, so it is set when the decision is asked again after
    the store refused a rate limit."""


class RateLimitsDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A key's or project's rate limits and its sliding 60-second window (check 3r)."""

    rpm: int | None = None
    """Requests per minute: at most this many admitted in any 60 s; None: no ceiling."""
    tpm: int | None = None
    """Tokens per minute (prompt + completion; a request in flight counts its bound,
    a settled one what the provider reported); None: no ceiling."""
    max_parallel: int | None = None
    """Requests in flight at once; None: no ceiling."""
    requests_in_window: int | None = None
    """Requests admitted in the 60 s before the request; None when not counted yet: the
    store counts and checks the windows atomically when it admits the request, and a
    request it refuses is decided again with the counts it saw."""
    tokens_in_window: int | None = None
    """Their tokens; None when not counted yet."""
    parallel: int | None = None
    """Requests in flight; None when not counted yet."""
    retry_after_seconds: int | None = None
    """Whole seconds until the oldest request in the window leaves it (so a request
    and its tokens free up); None when the window is empty or not counted."""
    tokens_retry_after_seconds: int | None = None
    """Whole seconds (at least 1) until the newest request in the window leaves it:
    then every token now counted has left, so any request within `tpm` fits. The
    store reports the window's oldest and newest request, not each one's tokens, so
    this is the shortest wait that is never too short for a tokens-per-minute
    refusal (the oldest leaving may free too few tokens); a whole window when the
    store reports only the oldest. None when empty or not counted."""


class PeriodBudgetDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A period budget and its current window, as of the request's time."""

    amount: Money
    """The most settled usage allowed per window (USD); `"0"` blocks every request."""
    period: Literal["hour", "day", "week", "month"]
    """The calendar period of a window, in the gateway's `budget_time_zone` (weeks start
    on Monday)."""
    usage: Money
    """Settled usage in the current window: the budget check compares this alone, so
    in-flight requests never cause a refusal."""
    reserved: Money = Decimal(0)
    """Cost held in this window by requests still in flight (admission waits for them)."""
    window_start: Timestamp
    """When the current window began (RFC 3339 UTC)."""
    resets_at: Timestamp
    """When the next window begins and usage starts again from zero."""


class StoredBudgetDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A period budget as the key store holds it (`gateway keys set-budget`), before any
    policy file's budget is weighed against it (`data.gateway.effective_budgets`)."""

    amount: Money
    """The most settled usage allowed per window (USD)."""
    period: Literal["hour", "day", "week", "month"]
    """The calendar period of a window, in the gateway's `budget_time_zone`."""


class KeyDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The API key the token resolved to."""

    id: str
    """The key's id (never the token)."""
    status: KeyStatus
    """Only `active` keys pass check 2."""
    usage: Money
    """Settled usage: the cost of the requests that completed. The usage-limit check
    (401) compares this alone, so in-flight requests never cause a refusal."""
    reserved: Money = Decimal(0)
    """Cost held by this key's requests still in flight (upper bounds, replaced by the
    real cost when they settle); admission waits for them instead of refusing."""
    usage_limit: Money | None = None
    """The key's usage limit; None means unlimited, `"0"` blocks every request."""
    project_id: str
    """The project the key belongs to."""
    iam_rules: tuple[IamRuleDocument, ...] = ()
    """The key's own IAM rules from the key store."""
    expires_at: Timestamp | None = None
    """When the key expires (from then on it is refused like a disabled key, check 2);
    None when it never does."""
    token_expires_at: Timestamp | None = None
    """Set when the token presented is the key's previous one, kept for a grace period
    after a rotation: when that grace period ends. None for the key's current token."""
    rate_limits: RateLimitsDocument | None = None
    """The key's rate limits and window (check 3r); None when the key has none."""
    period_budget: PeriodBudgetDocument | None = None
    """The key's period budget that applies (`data.gateway.effective_budgets`) and its
    current window; None when it has none."""
    stored_budget: StoredBudgetDocument | None = None
    """The period budget stored on the key; None when it has none. A policy file's
    budget may be stricter (`data.gateway.effective_budgets` weighs the two)."""


class ProjectDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The key's project."""

    id: str
    """The project's id."""
    status: ProjectStatus
    """A `deleted` project is archived (check 4, status 410)."""
    mode: ProjectMode = "hybrid"
    """Which credentials may serve requests (contract §5)."""
    provider_keys: tuple[str, ...] = ()
    """Provider ids the project holds its own key for (never the secrets)."""
    iam_rules: tuple[IamRuleDocument, ...] = ()
    """Project-wide rules: a ceiling that the key's rules can only narrow."""
    rate_limits: RateLimitsDocument | None = None
    """The project's rate limits and window, shared by all its keys (check 3r); None
    when the project has none."""
    period_budget: PeriodBudgetDocument | None = None
    """The project's period budget that applies (all its keys together) and its
    current window; None when it has none."""
    stored_budget: StoredBudgetDocument | None = None
    """The period budget stored on the project; None when it has none."""


class OrganizationDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The organization that owns the project and holds its credits."""

    id: str
    """The organization's id (appears in the 402 insufficient-credits message)."""
    credits: Money
    """Remaining settled credits (the 402 check compares this alone)."""
    credits_reserved: Money = Decimal(0)
    """Credits held by requests billed to them that are still in flight."""


class GatewayInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Facts about the gateway itself."""

    credentialed_providers: tuple[str, ...] = ("mock",)
    """Providers the gateway holds its own credential for; `mock` needs none and is
    always listed."""


class InputDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The policy's `input`: one per request, built by the proxy (pure)."""

    request: RequestDocument
    """The request as the policy needs it."""
    key: KeyDocument | None = None
    """The key the token resolved to; None when no token was sent or it is unknown."""
    project: ProjectDocument | None = None
    """The key's project; None when there is no key."""
    organization: OrganizationDocument | None = None
    """The project's organization; None when there is no key."""
    gateway: GatewayInfo = GatewayInfo()
    """Facts about the gateway's own credentials."""


class Reason(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Why an IAM rule denied the request (or, for `models.list`, hid a model)."""

    code: str
    """The rule type that denied (`deny_models`, `allow_providers`, ...) or `no_provider`
    when every provider of the model was filtered out."""
    rule_id: str | None = None
    """The `id` of the rule that denied, when one rule can be named."""
    message: str
    """The reason text, without the `Access denied: ` prefix."""


class RateLimitValues(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A window's effective ceilings; None: no ceiling."""

    rpm: int | None = None
    """Requests per minute."""
    tpm: int | None = None
    """Tokens (prompt + completion) per minute."""
    max_parallel: int | None = None
    """Requests in flight."""


class DecisionRateLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The rate limits an allowed request is admitted under."""

    key: RateLimitValues | None = None
    """The key's window (None: no limit)."""
    project: RateLimitValues | None = None
    """The project's window, shared by its keys (None: no limit)."""


class Decision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The value of `data.gateway.decision`; the proxy acts on it verbatim."""

    allow: bool
    """True when the request may be forwarded (or the model list returned)."""
    status: int
    """200 on allow; otherwise the documented HTTP status of the first failing check."""
    message: str = ""
    """Empty on allow; otherwise the documented error message, sent verbatim."""
    model: str | None = None
    """The catalog model id asked for (without any `provider/` prefix)."""
    provider: str | None = None
    """The provider chosen to serve the request; None on deny and for `models.list`."""
    provider_model_id: str | None = None
    """The model id to send upstream, from the catalog entry of the chosen provider."""
    billing: BillingMode | None = None
    """`provider-key` when the project's own key pays, `credits` when the organization's
    credits do; None on deny and for `models.list`."""
    reasons: tuple[Reason, ...] = ()
    """Every IAM reason found (the first one is in `message`)."""
    models: tuple[str, ...] | None = None
    """For `models.list` only: the catalog model ids the key may use, sorted."""
    rate_limits: DecisionRateLimits | None = None
    """On allow: the rate limits the admission enforces, the lower of the store's and
    the policy files' for each (check 3r); None when the policy does not say (then the
    store's own apply)."""


class ProviderOffer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One provider's offer of a catalog model."""

    model_id: str
    """The provider's own id for the model, sent upstream."""
    input_price: Money
    """USD per million input (prompt) tokens."""
    output_price: Money
    """USD per million output (completion) tokens."""
    max_output_tokens: int | None = None
    """Completion tokens the gateway assumes, and forwards, when a request names no
    `max_tokens` / `max_completion_tokens`; None means the gateway's `default_max_tokens`."""
    image_input_tokens: int | None = None
    """The most prompt tokens one image part can cost at this provider; None means
    requests with image parts are refused (400), since their cost cannot be bounded."""
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    """The body field that caps completion tokens here (reasoning models accept only
    `max_completion_tokens`); used when the gateway forwards its default."""
    cache_read_price: Money | None = None
    """USD per million prompt tokens read from the provider's prompt cache (Anthropic's
    `cache_read_input_tokens`, OpenAI's `cached_tokens`); None: the input price."""
    cache_write_price: Money | None = None
    """USD per million prompt tokens written to the prompt cache (Anthropic's
    `cache_creation_input_tokens`, 5-minute cache); None: the input price."""
    cache_write_1h_price: Money | None = None
    """USD per million prompt tokens written to the 1-hour prompt cache (Anthropic's
    `cache_creation.ephemeral_1h_input_tokens`); None: the 5-minute write price."""


class CatalogModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model clients may ask for by its catalog id."""

    owned_by: str
    """The model's maker, shown by `/v1/models`."""
    created: int
    """Unix time the model was published, shown by `/v1/models`."""
    providers: dict[str, ProviderOffer]
    """Provider id -> that provider's offer; a client may name one as `provider/model`."""


class CatalogProvider(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A provider the catalog knows."""

    name: str
    """Display name."""
    base_url: str | None = None
    """Default base URL (up to the API version); None for the built-in `mock` provider."""
    apis: tuple[Operation, ...] = ("chat.completions", "completions", "embeddings")
    """The operations this provider serves natively at `base_url` (`responses`: the OpenAI
    Responses API, `messages`: the Anthropic Messages API); a request is routed only to
    a provider that serves its operation."""


class CatalogDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`policies/catalog.yaml`, loaded as `data.catalog` (docs/architecture.md §5)."""

    providers: dict[str, CatalogProvider] = {}
    """Provider id -> display name and default base URL."""
    models: dict[str, CatalogModel]
    """Catalog model id -> who makes it and who serves it at what price."""


def input_value(document: InputDocument) -> dict[str, Any]:
    """The document as the plain value the engine takes as `input` (money as strings)."""
    # A JSON round trip rather than to_builtins: arrays come out as lists, exactly what a
    # JSON Schema validator and a decision log expect.
    value = msgspec.json.decode(msgspec.json.encode(document))
    assert isinstance(value, dict)
    return value


def engine_input(document: InputDocument) -> dict[str, Any]:
    """The document as the engine takes it per request, built without a JSON round trip.

    The values are `input_value`'s (money and times as the same strings, the same ints,
    booleans and nulls, every field present) except that arrays stay tuples, the engine's
    own form of an array: the policy cannot tell them from lists, and a decision returns
    arrays as lists either way. Objects are new dicts and every member is immutable, so
    the engine cannot change the proxy's document. `input_value` stays the form for JSON
    Schema validators and logs.
    """
    value = msgspec.to_builtins(document)
    assert isinstance(value, dict)
    return value


def decision_from_value(value: object) -> Decision:
    """Read `data.gateway.decision` back; raises `msgspec.ValidationError` if malformed."""
    return msgspec.convert(value, Decision)
