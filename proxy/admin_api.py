"""The admin HTTP API under `/admin`: the CLI's operations over HTTP.

Mounted only when `GATEWAY_ADMIN_TOKEN` is set and guarded by it (as a Bearer token
or `x-api-key`). Every handler calls the same `Store` method the CLI calls. Project
provider keys are shown by where they come from (`env` variable name); a literal
secret is never rendered back.
"""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import (
    NotAuthorizedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler

from proxy.credentials import read_token
from proxy.errors import error_body
from proxy.forwarded import client_address
from proxy.openapi_docs import admin_operation
from proxy.store.base import (
    ApiKey,
    Conflict,
    IamRule,
    KeyStatus,
    NotFound,
    Organization,
    Project,
    ProjectMode,
    ProjectRule,
    RuleStatus,
    RuleType,
    Store,
    StoreError,
)
from proxy.throttle import FailedAttempts

__all__ = ["admin_router"]

_MAX_MONEY = Decimal(10) ** 15


# -- views: what the API returns (money as decimal strings) -----------------------


class OrganizationView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    credits: str
    name: str


class ProjectView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    mode: ProjectMode
    status: str
    provider_keys: dict[str, str]
    """provider -> `env:VAR` or `value` (a literal secret is never shown)."""
    name: str


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    display: str
    project: str
    status: KeyStatus
    usage: str
    usage_limit: str | None
    description: str
    created_at: str


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


class SetMode(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: ProjectMode


class ProviderKeySource(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    env: str | None = None
    value: str | None = None


class CreateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project: str
    usage_limit: Decimal | None = None
    description: str = ""


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
    return OrganizationView(id=org.id, credits=str(org.credits), name=org.name)


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
    )


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
        "usage": str(key.usage),
        "usage_limit": None if key.usage_limit is None else str(key.usage_limit),
        "description": key.description,
        "created_at": key.created_at,
    }


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
    return value


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


def _store(state: State) -> Store:
    store: Store = state.store
    return store


# -- handlers ---------------------------------------------------------------------

_OP = admin_operation()


@get("/orgs", operation_class=_OP)
async def list_orgs(state: State) -> list[OrganizationView]:
    return [_org(org) for org in await _store(state).list_organizations()]


@post("/orgs", operation_class=_OP)
async def create_org(state: State, data: CreateOrganization) -> OrganizationView:
    credits = _money(data.credits, "credits") or Decimal(0)
    return _org(await _store(state).create_organization(data.id, credits))


@get("/orgs/{org_id:str}", operation_class=_OP)
async def show_org(state: State, org_id: str) -> OrganizationView:
    return _org(await _store(state).get_organization(org_id))


@put("/orgs/{org_id:str}/credits", operation_class=_OP)
async def set_credits(state: State, org_id: str, data: SetCredits) -> OrganizationView:
    credits = _money(data.credits, "credits") or Decimal(0)
    return _org(await _store(state).set_credits(org_id, credits))


@put("/orgs/{org_id:str}/name", operation_class=_OP)
async def rename_org(state: State, org_id: str, data: SetName) -> OrganizationView:
    return _org(await _store(state).rename_organization(org_id, data.name))


@get("/projects", operation_class=_OP)
async def list_projects(state: State) -> list[ProjectView]:
    return [_project(p) for p in await _store(state).list_projects()]


@post("/projects", operation_class=_OP)
async def create_project(state: State, data: CreateProject) -> ProjectView:
    return _project(await _store(state).create_project(data.id, data.organization, data.mode))


@get("/projects/{project_id:str}", operation_class=_OP)
async def show_project(state: State, project_id: str) -> ProjectView:
    return _project(await _store(state).get_project(project_id))


@put("/projects/{project_id:str}/mode", operation_class=_OP)
async def set_mode(state: State, project_id: str, data: SetMode) -> ProjectView:
    return _project(await _store(state).set_project_mode(project_id, data.mode))


@put("/projects/{project_id:str}/provider-keys/{provider:str}", operation_class=_OP)
async def set_provider_key(
    state: State, project_id: str, provider: str, data: ProviderKeySource
) -> ProjectView:
    if (data.env is None) == (data.value is None):
        raise ValidationException("give exactly one of `env` (a variable name) or `value`")
    source = {"env": data.env} if data.env is not None else {"value": data.value or ""}
    return _project(await _store(state).set_provider_key(project_id, provider, source))


@delete(
    "/projects/{project_id:str}/provider-keys/{provider:str}", operation_class=_OP, status_code=200
)
async def remove_provider_key(state: State, project_id: str, provider: str) -> ProjectView:
    return _project(await _store(state).set_provider_key(project_id, provider, None))


@post("/projects/{project_id:str}/archive", operation_class=_OP)
async def archive_project(state: State, project_id: str) -> ProjectView:
    return _project(await _store(state).archive_project(project_id))


@put("/projects/{project_id:str}/name", operation_class=_OP)
async def rename_project(state: State, project_id: str, data: SetName) -> ProjectView:
    return _project(await _store(state).rename_project(project_id, data.name))


@get("/projects/{project_id:str}/iam", operation_class=_OP)
async def list_project_rules(state: State, project_id: str) -> list[ProjectRuleView]:
    return [_project_rule(rule) for rule in await _store(state).list_project_rules(project_id)]


@post("/projects/{project_id:str}/iam", operation_class=_OP)
async def add_project_rule(state: State, project_id: str, data: AddRule) -> ProjectRuleView:
    if not data.values:
        raise ValidationException("field `values` must list at least one value")
    rule = await _store(state).add_project_rule(project_id, data.type, tuple(data.values))
    return _project_rule(rule)


@put("/projects/{project_id:str}/iam/{rule_id:str}/status", operation_class=_OP)
async def set_project_rule_status(
    state: State, project_id: str, rule_id: str, data: SetRuleStatus
) -> ProjectRuleView:
    rule = await _store(state).set_project_rule_status(project_id, rule_id, data.status)
    return _project_rule(rule)


@delete("/projects/{project_id:str}/iam/{rule_id:str}", operation_class=_OP, status_code=200)
async def remove_project_rule(state: State, project_id: str, rule_id: str) -> dict[str, str]:
    await _store(state).remove_project_rule(project_id, rule_id)
    return {"removed": rule_id}


@get("/keys", operation_class=_OP)
async def list_keys(state: State, project: str | None = None) -> list[KeyView]:
    return [KeyView(**_key_fields(k)) for k in await _store(state).list_keys(project)]


@post("/keys", operation_class=_OP)
async def create_key(state: State, data: CreateKey) -> CreatedKeyView:
    limit = _money(data.usage_limit, "usage_limit")
    key, token = await _store(state).create_key(data.project, limit, data.description)
    return CreatedKeyView(**_key_fields(key), token=token)


@get("/keys/{key_id:str}", operation_class=_OP)
async def show_key(state: State, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _store(state).get_key(key_id)))


@post("/keys/{key_id:str}/disable", operation_class=_OP)
async def disable_key(state: State, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _store(state).set_key_status(key_id, "inactive")))


@post("/keys/{key_id:str}/enable", operation_class=_OP)
async def enable_key(state: State, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _store(state).set_key_status(key_id, "active")))


@delete("/keys/{key_id:str}", operation_class=_OP, status_code=200)
async def delete_key(state: State, key_id: str) -> KeyView:
    return KeyView(**_key_fields(await _store(state).set_key_status(key_id, "deleted")))


@put("/keys/{key_id:str}/usage-limit", operation_class=_OP)
async def set_limit(state: State, key_id: str, data: SetLimit) -> KeyView:
    limit = _money(data.usage_limit, "usage_limit")
    return KeyView(**_key_fields(await _store(state).set_usage_limit(key_id, limit)))


@put("/keys/{key_id:str}/description", operation_class=_OP)
async def rename_key(state: State, key_id: str, data: SetDescription) -> KeyView:
    return KeyView(**_key_fields(await _store(state).rename_key(key_id, data.description)))


@get("/keys/{key_id:str}/iam", operation_class=_OP)
async def list_rules(state: State, key_id: str) -> list[RuleView]:
    return [_rule(rule) for rule in await _store(state).list_rules(key_id)]


@post("/keys/{key_id:str}/iam", operation_class=_OP)
async def add_rule(state: State, key_id: str, data: AddRule) -> RuleView:
    if not data.values:
        raise ValidationException("field `values` must list at least one value")
    return _rule(await _store(state).add_rule(key_id, data.type, tuple(data.values)))


@delete("/keys/{key_id:str}/iam/{rule_id:str}", operation_class=_OP, status_code=200)
async def remove_rule(state: State, key_id: str, rule_id: str) -> dict[str, str]:
    await _store(state).remove_rule(key_id, rule_id)
    return {"removed": rule_id}


@put("/keys/{key_id:str}/iam/{rule_id:str}/status", operation_class=_OP)
async def set_rule_status(state: State, key_id: str, rule_id: str, data: SetRuleStatus) -> RuleView:
    return _rule(await _store(state).set_rule_status(key_id, rule_id, data.status))


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
            rename_key,
            list_rules,
            add_rule,
            remove_rule,
            set_rule_status,
        ],
        guards=[_guard(admin_token, FailedAttempts())],
        exception_handlers={StoreError: _store_error},
        tags=["admin"],
    )
