"""The records the key store holds and the one interface every backend implements.

The proxy only ever talks to `Store`; SQLite, PostgreSQL and PostgreSQL+Redis are
interchangeable behind it (see `open_store`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol

import msgspec

__all__ = [
    "ApiKey",
    "Conflict",
    "IamRule",
    "KeyContext",
    "KeyStatus",
    "NotFound",
    "Organization",
    "Project",
    "ProjectMode",
    "ProjectRule",
    "Reservation",
    "RuleStatus",
    "RuleType",
    "Store",
    "StoreError",
]

KeyStatus = Literal["active", "inactive", "deleted"]
ProjectMode = Literal["api-keys", "credits", "hybrid"]
ProjectStatus = Literal["active", "deleted"]
RuleType = Literal[
    "allow_models",
    "deny_models",
    "allow_providers",
    "deny_providers",
    "allow_operations",
    "deny_operations",
]
RuleStatus = Literal["active", "inactive"]


class StoreError(Exception):
    """A request the store cannot carry out; the message says why and how to fix it."""


class NotFound(StoreError):
    """The organization, project, key or rule named does not exist."""


class Conflict(StoreError):
    """The record exists but its state forbids the change (e.g. re-enabling a deleted key)."""


class Organization(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    credits: Decimal
    name: str = ""  # what people call it; the id never changes, the name may


class Project(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    organization_id: str
    mode: ProjectMode = "hybrid"
    status: ProjectStatus = "active"
    # provider id -> where the secret comes from: {"env": "VAR"} or {"value": "sk-..."}.
    # INVARIANT: never rendered back in full to any client.
    provider_keys: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    name: str = ""  # what people call it; the id never changes, the name may


class IamRule(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    type: RuleType
    values: tuple[str, ...]
    status: RuleStatus = "active"


class ProjectRule(msgspec.Struct, frozen=True, kw_only=True):
    """An IAM rule of a whole project: a ceiling every key of the project stays under."""

    id: str
    project_id: str
    type: RuleType
    values: tuple[str, ...]
    status: RuleStatus = "active"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    token_hash: str
    display: str  # e.g. "llmgtwy_Ab12…9xYz": prefix and last four, never the token
    project_id: str
    status: KeyStatus
    usage_limit: Decimal | None
    usage: Decimal  # settled usage only
    description: str
    created_at: str  # RFC 3339, UTC


class KeyContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the input document needs about one key, read in one go per request."""

    key: ApiKey
    reserved: Decimal  # cost held by reservations still in flight
    rules: tuple[IamRule, ...]
    project: Project
    organization: Organization
    credits_reserved: Decimal
    project_rules: tuple[ProjectRule, ...] = ()


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key_id: str
    organization_id: str | None  # set when the request is billed to credits
    amount: Decimal


class Store(Protocol):
    """The proxy's single view of keys, projects, organizations and usage."""

    async def migrate(self) -> None:
        """Apply every pending schema migration (idempotent) and reclaim expired reservations."""
        ...

    async def close(self) -> None: ...

    async def ensure_defaults(self) -> None:
        """Create organization `default` (credits 10.00) and project `default` (hybrid)
        when absent; never changes them when present."""
        ...

    def hash_token(self, token: str) -> str:
        """The lookup handle of `token` (its SHA-256 hex digest): the proxy hashes the
        presented token with this before `key_context`, which finds the key whether it
        is stored under that digest or, with `GATEWAY_SECRET_KEY`, its keyed form
        (`proxy.secret_box`)."""
        ...

    async def protect_secrets(self) -> tuple[int, int]:
        """With a secret key: convert every plain token hash to its keyed form and encrypt
        every provider key stored by value; returns (hashes converted, keys encrypted).
        Idempotent; a no-op without a secret key."""
        ...

    async def reclaim_expired(self) -> int:
        """Drop reservations past their expiry (their request crashed or was lost);
        returns how many. Also done on reserve and at start-up."""
        ...

    # -- request path --------------------------------------------------------------
    async def key_context(self, token_hash: str) -> KeyContext | None: ...
    async def reserve(
        self, key_id: str, organization_id: str | None, amount: Decimal
    ) -> Reservation | None:
        """Hold `amount` against the key's limit (and the organization's credits when
        `organization_id` is given), atomically across every process sharing the store.

        Admitted iff `usage + in-flight reservations < usage_limit` (no limit: always)
        and, when billed to credits, `credits - in-flight credit reservations > 0`; the
        new amount itself is not part of the check (the documented `usage >= limit`
        rule with in-flight requests counted). None when refused. Raises NotFound for
        an unknown key or organization. Unsettled reservations expire after the
        store's `reservation_ttl` and stop counting."""
        ...

    async def settle(self, reservation: Reservation, actual_cost: Decimal) -> None:
        """Replace the reservation by the actual cost (charged to the key, and to the
        organization's credits when the reservation named one)."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Drop the reservation without charging anything (upstream failed)."""
        ...

    # -- administration (CLI, admin HTTP API, dashboard) ---------------------------
    async def create_organization(self, org_id: str, credits: Decimal) -> Organization: ...
    async def set_credits(self, org_id: str, credits: Decimal) -> Organization: ...
    async def get_organization(self, org_id: str) -> Organization: ...
    async def list_organizations(self) -> list[Organization]: ...
    async def rename_organization(self, org_id: str, name: str) -> Organization: ...
    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project: ...
    async def get_project(self, project_id: str) -> Project: ...
    async def list_projects(self) -> list[Project]: ...
    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project: ...
    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project: ...
    async def archive_project(self, project_id: str) -> Project: ...
    async def rename_project(self, project_id: str, name: str) -> Project: ...
    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        """A rule for every key of the project (the keys' own rules can only narrow it)."""
        ...

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]: ...
    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule: ...
    async def remove_project_rule(self, project_id: str, rule_id: str) -> None: ...
    async def create_key(
        self, project_id: str, usage_limit: Decimal | None, description: str
    ) -> tuple[ApiKey, str]:
        """Returns the key record and the plain token (shown once, never stored)."""
        ...

    async def get_key(self, key_id: str) -> ApiKey: ...
    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]: ...
    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey: ...
    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey: ...
    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        """Change the key's description, the name people know it by (deleted keys too)."""
        ...

    async def add_rule(
        self, key_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> IamRule: ...
    async def list_rules(self, key_id: str) -> list[IamRule]: ...
    async def remove_rule(self, key_id: str, rule_id: str) -> None: ...
    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        """Turn a rule off (`inactive`: kept, but not applied) or on again."""
        ...
