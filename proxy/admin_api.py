"""The admin HTTP API under `/admin`: the CLI's operations over HTTP.

Mounted only when `GATEWAY_ADMIN_TOKEN` is set and guarded by it (as a Bearer token
or `x-api-key`). Every handler calls the same `Store` method the CLI calls. Project
provider keys are shown by where they come from (`env` variable name); a literal
secret is never rendered back.
"""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler

from proxy.audit import Actor, AuditedAdmin, audit_json
from proxy.budget_facts import parse_time
from proxy.budgets import Budget, format_budget
from proxy.credentials import read_token
from proxy.effective_controls import shown_controls
from proxy.errors import error_body
from proxy.forwarded import client_address
from proxy.key_activity import ActivityRecorder
from proxy.money import money_text, optional_money_text, plain_digits
from proxy.openapi_docs import admin_operation
from proxy.store.base import (
    ApiKey,
    Conflict,
    IamRule,
    KeyActivity,
    KeyStatus,
    NotFound,
    Organization,
    Project,
    ProjectMode,
    ProjectRule,
    RateLimits,
    RuleStatus,
    RuleType,
    Store,
    StoreError,
)
from proxy.store.common import check_budget, parse_expiry
from proxy.throttle import FailedAttempts

__all__ = ["admin_router"]

_MAX_MONEY = Decimal(10) ** 15
_MAX_AUDIT_ROWS = 10_000


# -- views: what the API returns (money as decimal strings) -----------------------


class OrganizationView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    credits: str
    name: str


class BudgetWindowView(msgspec.Struct, frozen=True, kw_only=True):
    """A period budget's current window (in the gateway's `budget_time_zone`)."""

    budget: str
    amount: str
    period: str
    usage: str
    """Settled usage in the window."""
    reserved: str
    """Held by requests in flight in the window."""
    window_start: str
    resets_at: str
    resets_in_seconds: int | None = None
    """Seconds until `resets_at`, at the gateway's clock."""
    source: Literal["store", "policy"] = "store"
    """Where the budget that applies comes from: stored on the key or project (`store`),
    or a policy file's `budgets:` (`policy`), the stricter of the two for one period."""
    policy_id: str | None = None
    """The policy file budget's `id`, when it has one."""
    stored_not_held: str | None = None
    """The stored budget when it is not the one held: a policy file's budget of another
    period applies instead."""


class LimitView(msgspec.Struct, frozen=True, kw_only=True):
    """One rate limit that applies, and where it comes from."""

    limit: int
    source: Literal["store", "policy"]
    """Stored on the key or project (`store`), or a policy file's lower ceiling (`policy`)."""


class EffectiveLimitsView(msgspec.Struct, frozen=True, kw_only=True):
    """The rate limits admission enforces: the stored ones lowered by policy files."""

    rpm: LimitView | None = None
    tpm: LimitView | None = None
    max_parallel: LimitView | None = None


class ProjectView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    mode: ProjectMode
    status: str
    provider_keys: dict[str, str]
    """provider -> `env:VAR` or `value` (a literal secret is never shown)."""
    name: str
    rpm: int | None = None
    """Requests per minute for all the project's keys together; None: no ceiling."""
    tpm: int | None = None
    """Tokens (prompt + completion) per minute for all its keys together."""
    max_parallel: int | None = None
    """Requests in flight at once for all its keys together."""
    budget: str | None = None
    """The period budget (`100.00/month`, all keys together); None: none."""
    period_budget: BudgetWindowView | None = None
    """On `GET /projects/{id}`: the budget that applies (stored or a policy file's),
    its current window, usage and reset time."""
    effective_rate_limits: EffectiveLimitsView | None = None
    """On `GET /projects/{id}`: the rate limits that apply to all its keys together."""
    rate_window: RateWindowView | None = None
    """On `GET /projects/{id}`: the project's rate window now."""
    controls_problem: str | None = None
    """Set when the policy could not say what applies (then the stored controls are shown)."""


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    display: str
    project: str
    status: KeyStatus
    usage: str
    usage_limit: str | None
    description: str
    created_at: str
    expires_at: str | None = None
    budget: str | None = None
    """The period budget (`5.00/day`); None: none."""
    period_budget: BudgetWindowView | None = None
    """On `GET /keys/{id}`: the budget that applies (stored or a policy file's), its
    current window, usage and reset time."""
    project_period_budget: BudgetWindowView | None = None
    """On `GET /keys/{id}`: the budget that applies to its project (all its keys)."""
    effective_rate_limits: EffectiveLimitsView | None = None
    """On `GET /keys/{id}`: the rate limits that apply to the key (stored or policy)."""
    project_effective_rate_limits: EffectiveLimitsView | None = None
    """On `GET /keys/{id}`: the rate limits that apply to its project's window."""
    controls_problem: str | None = None
    """Set when the policy could not say what applies (then the stored controls are shown)."""
    last_used_at: str | None = None
    """When a request last presented the key (flushed from each instance every 2 s)."""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rpm: int | None = None
    """Requests per minute; None: no ceiling."""
    tpm: int | None = None
    """Tokens (prompt + completion) per minute; None: no ceiling."""
    max_parallel: int | None = None
    """Requests in flight at once; None: no ceiling."""
    rate_window: RateWindowView | None = None
    """The key's window now (`GET /admin/keys/{id}` and `PUT .../rate-limits` only)."""
    project_rate_window: RateWindowView | None = None
    """Its project's window now, shared by all its keys (as `rate_window`)."""


class RateWindowView(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    """Requests admitted in the last 60 s."""
    tokens: int
    """Their tokens: bounds while in flight, what the provider reported once settled."""
    parallel: int
    """Requests in flight."""
    resets_in_seconds: int | None = None
    """Seconds until the window's oldest request leaves it; None when it is empty."""


class RateLimitsBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A key's or project's rate limits, all three replaced; null removes a ceiling."""

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


class CreatedKeyView(KeyView, frozen=True, kw_only=True):
    token: str
    """The plain token: shown this once, never stored."""


class RuleView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    type: RuleType
    values: list[str]
    status: str


# -- request bodies ----------------------------------------------------------------


class CreateOrganization(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    credits: Decimal = Decimal(0)


class SetCredits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    credits: Decimal


class CreateProject(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    organization: str
    mode: ProjectMode = "hybrid"
    budget: str | None = None
    """`AMOUNT/PERIOD`, PERIOD one of hour, day, week, month (e.g. `100.00/month`)."""


class SetBudget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    budget: str | None
    """`AMOUNT/PERIOD`, PERIOD one of hour, day, week, month (e.g. `5.00/day`); null
    clears the budget."""


class SetMode(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: ProjectMode


class ProviderKeySource(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    env: str | None = None
    value: str | None = None


class CreateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project: str
    usage_limit: Decimal | None = None
    description: str = ""
    expires_at: str | None = None
    """RFC 3339, e.g. `2027-01-01T00:00:00Z`; None: never expires."""
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget: str | None = None
    """`AMOUNT/PERIOD`, PERIOD one of hour, day, week, month (e.g. `5.00/day`)."""


class SetExpiry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    expires_at: str | None
    """RFC 3339, e.g. `2027-01-01T00:00:00Z`; null clears the expiry."""


class Rotate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    grace_seconds: float = 0
    """How long the old token keeps working; 0 stops it at once."""


class RotatedKeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    token: str
    """The new plain token: shown this once, never stored."""


class SetLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    usage_limit: Decimal | None


class AddRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: RuleType
    values: list[str]


class SetDescription(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: str


class SetRuleStatus(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: RuleStatus


class SetName(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str


class ProjectRuleView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    project_id: str
    type: RuleType
    values: list[str]
    status: str


# -- conversions --------------------------------------------------------------------


def _org(org: Organization) -> OrganizationView:
    return OrganizationView(id=org.id, credits=money_text(org.credits), name=org.name)


def _project(project: Project) -> ProjectView:
    keys = {
        provider: f"env:{source['env']}" if "env" in source else "value"
        for provider, source in project.provider_keys.items()
    }
    return ProjectView(
        id=project.id,
        organization_id=project.organization_id,
        mode=project.mode,
        status=project.status,
        provider_keys=keys,
        name=project.name,
        rpm=project.rate_limits.rpm,
        tpm=project.rate_limits.tpm,
        max_parallel=project.rate_limits.max_parallel,
        budget=None if project.budget is None else format_budget(project.budget),
    )


def _rule_values(data: AddRule) -> tuple[str, ...]:
    """The values of a rule to add, of a key or a project; a rule needs at least one."""
    if not data.values:
        raise ValidationException("field `values` must list at least one value")
    return tuple(data.values)


def _project_rule(rule: ProjectRule) -> ProjectRuleView:
    return ProjectRuleView(
        id=rule.id,
        project_id=rule.project_id,
        type=rule.type,
        values=list(rule.values),
        status=rule.status,
    )


def _key_fields(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "display": key.display,
        "project": key.project_id,
        "status": key.status,
        "usage": money_text(key.usage),
        "usage_limit": optional_money_text(key.usage_limit),
        "description": key.description,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "rpm": key.rate_limits.rpm,
        "tpm": key.rate_limits.tpm,
        "max_parallel": key.rate_limits.max_parallel,
        "budget": None if key.budget is None else format_budget(key.budget),
    }


def _limits(data: RateLimitsBody | CreateKey) -> RateLimits:
    return RateLimits(rpm=data.rpm, tpm=data.tpm, max_parallel=data.max_parallel)


def _budget(text: str | None) -> Budget | None:
    """A budget from the request body; a bad one is a 400 naming the field."""
    return None if text is None else check_budget(text, "field `budget`")


def _rule(rule: IamRule) -> RuleView:
    return RuleView(
        id=rule.id, key_id=rule.key_id, type=rule.type, values=list(rule.values), status=rule.status
    )


def _money(value: Decimal | None, field: str) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite() or value < 0 or value >= _MAX_MONEY:
        raise ValidationException(
            f'field `{field}` must be a non-negative decimal below 10^15, e.g. "10.00"'
        )
    return plain_digits(value)


AnyRequest = Request[Any, Any, Any]


# -- guard and errors -------------------------------------------------------------


def _guard(admin_token: str, attempts: FailedAttempts) -> Any:
    expected = admin_token.encode("utf-8")

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        client = client_address(connection)
        wait = attempts.retry_after(client)
        if wait is not None:
            raise TooManyRequestsException(
                f"Too many requests with a wrong admin token from this address; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        presented = read_token(connection.headers) or ""
        if not hmac.compare_digest(presented.encode("utf-8"), expected):
            attempts.failed(client)
            raise NotAuthorizedException("Unauthorized: missing or wrong admin token")
        attempts.succeeded(client)

    return guard


def _store_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    openai_format = getattr(request.app.state, "error_format", "documented") == "openai"
    body = error_body(status, str(exc), "openai" if openai_format else "documented")
    return Response(content=body, status_code=status, media_type="application/json")


def _validation_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A body or parameter Litestar refused: its detail ("Validation failed for PUT
    /admin/...") names neither the field nor what it wants, which it keeps in `extra`
    ({"key": "rpm", "message": "Expected `int | null`, got `str`"}); say both."""
    assert isinstance(exc, ValidationException)
    problems = [
        f"`{item['key']}`: {item['message']}" if item.get("key") else str(item["message"])
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict) and "message" in item
    ]
    message = str(exc.detail) + (f": {'; '.join(problems)}" if problems else "")
    openai_format = getattr(request.app.state, "error_format", "documented") == "openai"
    body = error_body(400, message, "openai" if openai_format else "documented")
    return Response(content=body, status_code=400, media_type="application/json")


def _admin(request: AnyRequest) -> AuditedAdmin:
    """The app's store, each change recorded as made by the admin API from this client."""
    store: Store = request.app.state.store
    return AuditedAdmin(store, Actor(kind="admin-api", client=client_address(request)))


# -- handlers ---------------------------------------------------------------------

_OP = admin_operation()


@get("/orgs", operation_class=_OP)
async def list_orgs(request: AnyRequest) -> list[OrganizationView]:
    return [_org(org) for org in await _admin(request).list_organizations()]


@post("/orgs", operation_class=_OP)
async def create_org(request: AnyRequest, data: CreateOrganization) -> OrganizationView:
    credits = _money(data.credits, "credits") or Decimal(0)
    return _org(await _admin(request).create_organization(data.id, credits))


@get("/orgs/{org_id:str}", operation_class=_OP)
async def show_org(request: AnyRequest, org_id: str) -> OrganizationView:
    return _org(await _admin(request).get_organization(org_id))


@put("/orgs/{org_id:str}/credits", operation_class=_OP)
async def set_credits(request: AnyRequest, org_id: str, data: SetCredits) -> OrganizationView:
    credits = _money(data.credits, "credits") or Decimal(0)
    return _org(await _admin(request).set_credits(org_id, credits))


@put("/orgs/{org_id:str}/name", operation_class=_OP)
async def rename_org(request: AnyRequest, org_id: str, data: SetName) -> OrganizationView:
    return _org(await _admin(request).rename_organization(org_id, data.name))


@get("/projects", operation_class=_OP)
async def list_projects(request: AnyRequest) -> list[ProjectView]:
    return [_project(p) for p in await _admin(request).list_projects()]


@post("/projects", operation_class=_OP)
async def create_project(request: AnyRequest, data: CreateProject) -> ProjectView:
    budget = _budget(data.budget)
    admin = _admin(request)
    project = await admin.create_project(data.id, data.organization, data.mode)
    if budget is not None:
        project = await admin.set_project_budget(project.id, budget)
    return _project(project)


@get("/projects/{project_id:str}", operation_class=_OP)
async def show_project(request: AnyRequest, project_id: str) -> ProjectView:
    return await _project_view(request, await _admin(request).get_project(project_id))


@put("/projects/{project_id:str}/budget", operation_class=_OP)
async def set_project_budget(request: AnyRequest, project_id: str, data: SetBudget) -> ProjectView:
    project = await _admin(request).set_project_budget(project_id, _budget(data.budget))
    return await _project_view(request, project)


@put("/projects/{project_id:str}/mode", operation_class=_OP)
async def set_mode(request: AnyRequest, project_id: str, data: SetMode) -> ProjectView:
    return _project(await _admin(request).set_project_mode(project_id, data.mode))


@put("/projects/{project_id:str}/provider-keys/{provider:str}", operation_class=_OP)
async def set_provider_key(
    request: AnyRequest, project_id: str, provider: str, data: ProviderKeySource
) -> ProjectView:
    if (data.env is None) == (data.value is None):
        raise ValidationException("give exactly one of `env` (a variable name) or `value`")
    source = {"env": data.env} if data.env is not None else {"value": data.value or ""}
    return _project(await _admin(request).set_provider_key(project_id, provider, source))


@delete(
    "/projects/{project_id:str}/provider-keys/{provider:str}", operation_class=_OP, status_code=200
)
async def remove_provider_key(request: AnyRequest, project_id: str, provider: str) -> ProjectView:
    return _project(await _admin(request).set_provider_key(project_id, provider, None))


@post("/projects/{project_id:str}/archive", operation_class=_OP)
async def archive_project(request: AnyRequest, project_id: str) -> ProjectView:
    return _project(await _admin(request).archive_project(project_id))


async def _activity(request: AnyRequest, key_ids: list[str] | None) -> dict[str, KeyActivity]:
    """The keys' activity totals, this instance's latest counts included."""
    recorder: ActivityRecorder | None = getattr(request.app.state, "activity", None)
    if recorder is not None:
        await recorder.flush()
    return await _admin(request).key_activity(key_ids)


def _with_activity(key: ApiKey, activity: dict[str, KeyActivity]) -> KeyView:
    seen = activity.get(key.id)
    if seen is None:
        return KeyView(**_key_fields(key))
    return KeyView(
        **_key_fields(key),
        last_used_at=seen.last_used_at,
        requests=seen.requests,
        prompt_tokens=seen.prompt_tokens,
        completion_tokens=seen.completion_tokens,
    )


@put("/projects/{project_id:str}/name", operation_class=_OP)
async def rename_project(request: AnyRequest, project_id: str, data: SetName) -> ProjectView:
    return _project(await _admin(request).rename_project(project_id, data.name))


@get("/projects/{project_id:str}/iam", operation_class=_OP)
async def list_project_rules(request: AnyRequest, project_id: str) -> list[ProjectRuleView]:
    return [_project_rule(rule) for rule in await _admin(request).list_project_rules(project_id)]


@post("/projects/{project_id:str}/iam", operation_class=_OP)
async def add_project_rule(request: AnyRequest, project_id: str, data: AddRule) -> ProjectRuleView:
    rule = await _admin(request).add_project_rule(project_id, data.type, _rule_values(data))
    return _project_rule(rule)


@put("/projects/{project_id:str}/iam/{rule_id:str}/status", operation_class=_OP)
async def set_project_rule_status(
    request: AnyRequest, project_id: str, rule_id: str, data: SetRuleStatus
) -> ProjectRuleView:
    rule = await _admin(request).set_project_rule_status(project_id, rule_id, data.status)
    return _project_rule(rule)


@delete("/projects/{project_id:str}/iam/{rule_id:str}", operation_class=_OP, status_code=200)
async def remove_project_rule(request: AnyRequest, project_id: str, rule_id: str) -> dict[str, str]:
    await _admin(request).remove_project_rule(project_id, rule_id)
    return {"removed": rule_id}


@get("/keys", operation_class=_OP)
async def list_keys(request: AnyRequest, project: str | None = None) -> list[KeyView]:
    keys = await _admin(request).list_keys(project)
    activity = await _activity(request, None)
    return [_with_activity(k, activity) for k in keys]


@post("/keys", operation_class=_OP)
async def create_key(request: AnyRequest, data: CreateKey) -> CreatedKeyView:
    limit = _money(data.usage_limit, "usage_limit")
    budget = _budget(data.budget)
    admin = _admin(request)
    key, token = await admin.create_key(
        data.project,
        limit,
        data.description,
        expires_at=data.expires_at,
        rate_limits=_limits(data),
    )
    if budget is not None:
        key = await admin.set_key_budget(key.id, budget)
    return CreatedKeyView(**_key_fields(key), token=token)


@get("/keys/{key_id:str}", operation_class=_OP)
async def show_key(request: AnyRequest, key_id: str) -> KeyView:
    return await _key_view(request, await _admin(request).get_key(key_id))


async def _key_view(request: AnyRequest, key: ApiKey) -> KeyView:
    """A key as GET shows it: its activity, and the controls that apply to it and its
    project (stored or a policy file's) with their windows, at the gateway's clock."""
    admin = _admin(request)
    project = await admin.get_project(key.project_id)
    shown = await _shown_controls(request, key, project)
    view = _with_activity(key, await _activity(request, [key.id]))
    return msgspec.structs.replace(view, **msgspec.convert(shown, _KeyControls).fields())


class _KeyControls(msgspec.Struct, frozen=True, kw_only=True):
    period_budget: BudgetWindowView | None
    project_period_budget: BudgetWindowView | None
    effective_rate_limits: EffectiveLimitsView
    project_effective_rate_limits: EffectiveLimitsView
    rate_window: RateWindowView | None
    project_rate_window: RateWindowView | None
    controls_problem: str | None

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__struct_fields__}


class _ProjectControls(msgspec.Struct, frozen=True, kw_only=True):
    period_budget: BudgetWindowView | None
    effective_rate_limits: EffectiveLimitsView
    rate_window: RateWindowView | None
    controls_problem: str | None

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__struct_fields__}


async def _shown_controls(
    request: AnyRequest, key: ApiKey | None, project: Project
) -> dict[str, Any]:
    """`shown_controls` with the serving policy and the gateway's clock and zone."""
    state = request.app.state
    holder = getattr(state, "policy", None)
    query = None if holder is None else holder.current.controls
    at = parse_time(state.budget_clock())
    return await shown_controls(_admin(request), query, key, project, at, state.budget_zone)


async def _project_view(request: AnyRequest, project: Project) -> ProjectView:
    """A project as GET shows it: the controls that apply to it, with their windows."""
    shown = await _shown_controls(request, None, project)
    return msgspec.structs.replace(
        _project(project), **msgspec.convert(shown, _ProjectControls).fields()
    )


@put("/keys/{key_id:str}/rate-limits", operation_class=_OP)
async def set_key_rate_limits(request: AnyRequest, key_id: str, data: RateLimitsBody) -> KeyView:
    # Shown as GET shows it, so the caller sees the window the new limits apply to.
    return await _key_view(
        request, await _admin(request).set_key_rate_limits(key_id, _limits(data))
    )


@put("/projects/{project_id:str}/rate-limits", operation_class=_OP)
async def set_project_rate_limits(
    request: AnyRequest, project_id: str, data: RateLimitsBody
) -> ProjectView:
    return _project(await _admin(request).set_project_rate_limits(project_id, _limits(data)))


@put("/keys/{key_id:str}/budget", operation_class=_OP)
async def set_key_budget(request: AnyRequest, key_id: str, data: SetBudget) -> KeyView:
    # Shown as GET shows it: its activity and the window the new budget applies to.
    return await _key_view(
        request, await _admin(request).set_key_budget(key_id, _budget(data.budget))
    )


@post("/keys/{key_id:str}/disable", operation_class=_OP)
async def disable_key(request: AnyRequest, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _admin(request).set_key_status(key_id, "inactive")))


@post("/keys/{key_id:str}/enable", operation_class=_OP)
async def enable_key(request: AnyRequest, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _admin(request).set_key_status(key_id, "active")))


@delete("/keys/{key_id:str}", operation_class=_OP, status_code=200)
async def delete_key(request: AnyRequest, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _admin(request).set_key_status(key_id, "deleted")))


@put("/keys/{key_id:str}/usage-limit", operation_class=_OP)
async def set_limit(request: AnyRequest, key_id: str, data: SetLimit) -> KeyView:
    limit = _money(data.usage_limit, "usage_limit")
    return KeyView(**_key_fields(await _admin(request).set_usage_limit(key_id, limit)))


@put("/keys/{key_id:str}/expires-at", operation_class=_OP)
async def set_expiry(request: AnyRequest, key_id: str, data: SetExpiry) -> KeyView:
    return KeyView(**_key_fields(await _admin(request).set_key_expiry(key_id, data.expires_at)))


@post("/keys/{key_id:str}/rotate", operation_class=_OP)
async def rotate_key(request: AnyRequest, key_id: str, data: Rotate) -> RotatedKeyView:
    key, token = await _admin(request).rotate_key(key_id, data.grace_seconds)
    return RotatedKeyView(id=key.id, token=token)


@put("/keys/{key_id:str}/description", operation_class=_OP)
async def rename_key(request: AnyRequest, key_id: str, data: SetDescription) -> KeyView:
    return KeyView(**_key_fields(await _admin(request).rename_key(key_id, data.description)))


@get("/keys/{key_id:str}/iam", operation_class=_OP)
async def list_rules(request: AnyRequest, key_id: str) -> list[RuleView]:
    return [_rule(rule) for rule in await _admin(request).list_rules(key_id)]


@post("/keys/{key_id:str}/iam", operation_class=_OP)
async def add_rule(request: AnyRequest, key_id: str, data: AddRule) -> RuleView:
    return _rule(await _admin(request).add_rule(key_id, data.type, _rule_values(data)))


@delete("/keys/{key_id:str}/iam/{rule_id:str}", operation_class=_OP, status_code=200)
async def remove_rule(request: AnyRequest, key_id: str, rule_id: str) -> dict[str, str]:
    await _admin(request).remove_rule(key_id, rule_id)
    return {"removed": rule_id}


@put("/keys/{key_id:str}/iam/{rule_id:str}/status", operation_class=_OP)
async def set_rule_status(
    request: AnyRequest, key_id: str, rule_id: str, data: SetRuleStatus
) -> RuleView:
    return _rule(await _admin(request).set_rule_status(key_id, rule_id, data.status))


@get("/audit", operation_class=_OP)
async def list_audit(
    request: AnyRequest, since: str | None = None, object: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The audit log, oldest first: `since` (RFC 3339), `object` (a type, an id or
    `type:id`), at most `limit` of the newest entries."""
    if not 1 <= limit <= _MAX_AUDIT_ROWS:
        raise ValidationException(f"query `limit` must be between 1 and {_MAX_AUDIT_ROWS}")
    moment = parse_expiry(since, "query `since`") if since else None
    entries = await _admin(request).list_audit(moment, object, limit)
    return [audit_json(entry) for entry in entries]


def admin_router(admin_token: str) -> Router:
    """The `/admin` router, guarded by `admin_token`."""
    return Router(
        path="/admin",
        route_handlers=[
            list_orgs,
            create_org,
            show_org,
            set_credits,
            rename_org,
            list_projects,
            create_project,
            show_project,
            set_project_budget,
            set_mode,
            set_provider_key,
            remove_provider_key,
            archive_project,
            rename_project,
            list_project_rules,
            add_project_rule,
            set_project_rule_status,
            remove_project_rule,
            list_keys,
            create_key,
            show_key,
            disable_key,
            enable_key,
            delete_key,
            set_limit,
            set_key_rate_limits,
            set_project_rate_limits,
            rename_key,
            list_rules,
            add_rule,
            remove_rule,
            set_rule_status,
            set_expiry,
            set_key_budget,
            rotate_key,
            list_rules,
            add_rule,
            remove_rule,
            list_audit,
        ],
        guards=[_guard(admin_token, FailedAttempts())],
        exception_handlers={StoreError: _store_error, ValidationException: _validation_error},
        tags=["admin"],
    )
