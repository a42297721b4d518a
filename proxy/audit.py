"""The audit log of administrative changes: who changed what, from where, before and after.

Every surface that changes keys, projects or organizations (the CLI, the admin API, the
dashboard) reaches the store through `AuditedAdmin`, which records one `AuditEntry` per
change that succeeded: the time, the actor (`cli`, `admin-api` or `dashboard`) and its
client address, the object (`key`/`project`/`organization`/`rule` and its id), the action
and the fields that changed, before and after. Entries live in the database
(`Store.record_audit`), so they survive restarts and every instance sees the same log.

INVARIANT: an entry never holds a token, a token hash or a provider secret. Keys are
recorded by the fields below (`token` appears only as the word "rotated"); a provider
key given by value is recorded as `"value"`, one read from the environment by the
variable's name.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import msgspec

from proxy.budgets import Budget, format_budget
from proxy.money import optional_money_text
from proxy.store.base import (
    NO_RATE_LIMITS,
    ApiKey,
    AuditEntry,
    IamRule,
    KeyActivity,
    KeyStatus,
    Organization,
    Project,
    ProjectMode,
    ProjectRule,
    RateLimits,
    RateState,
    RuleStatus,
    RuleType,
    Store,
    WindowUsage,
)
from proxy.store.common import now_rfc3339

__all__ = ["Actor", "AuditedAdmin", "audit_json", "cli_actor", "key_fields", "project_fields"]

ActorKind = Literal["cli", "admin-api", "dashboard"]


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    kind: ActorKind
    client: str
    """The client's address (admin API, dashboard) or `user@host` (CLI)."""


def cli_actor() -> Actor:
    """The CLI's actor: the operating-system user and host that ran the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return Actor(kind="cli", client=f"{user}@{socket.gethostname()}")


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the CLI and the admin API show it."""
    return {
        "seq": entry.seq,
        "time": entry.time,
        "actor": entry.actor,
        "client": entry.client,
        "action": entry.action,
        "object": f"{entry.object_type}:{entry.object_id}",
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "before": entry.before,
        "after": entry.after,
    }


def _money(amount: Decimal | None) -> str | None:
    return optional_money_text(amount)


def key_fields(key: ApiKey) -> dict[str, Any]:
    """What the audit log records of a key: never its token, hash or display form."""
    return {
        "project": key.project_id,
        "status": key.status,
        "usage_limit": _money(key.usage_limit),
        "description": key.description,
        "expires_at": key.expires_at,
        **rate_limit_fields(key.rate_limits),
        "budget": None if key.budget is None else format_budget(key.budget),
    }


def rate_limit_fields(limits: RateLimits) -> dict[str, int | None]:
    return {"rpm": limits.rpm, "tpm": limits.tpm, "max_parallel": limits.max_parallel}


def project_fields(project: Project) -> dict[str, Any]:
    """What the audit log records of a project: provider keys by source, never a secret."""
    return {
        "name": project.name,
        "organization": project.organization_id,
        "mode": project.mode,
        "status": project.status,
        "budget": None if project.budget is None else format_budget(project.budget),
        "provider_keys": {
            provider: f"env:{source['env']}" if "env" in source else "value"
            for provider, source in sorted(project.provider_keys.items())
        },
        **rate_limit_fields(project.rate_limits),
    }


def _organization_fields(org: Organization) -> dict[str, Any]:
    return {"name": org.name, "credits": _money(org.credits)}


def _rule_fields(rule: IamRule) -> dict[str, Any]:
    return {
        "key_id": rule.key_id,
        "type": rule.type,
        "values": list(rule.values),
        "status": rule.status,
    }


def _project_rule_fields(rule: ProjectRule) -> dict[str, Any]:
    return {
        "project_id": rule.project_id,
        "type": rule.type,
        "values": list(rule.values),
        "status": rule.status,
    }


def _changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Only the fields that changed (all of them on a creation or a removal)."""
    if before is None or after is None:
        return (None if before is None else dict(before)), (None if after is None else dict(after))
    changed = [name for name in after if before.get(name) != after[name]]
    return {name: before.get(name) for name in changed}, {name: after[name] for name in changed}


class AuditedAdmin:
    """The store's administrative operations, each change recorded in the audit log.

    Reads pass straight through. A change that raises records nothing."""

    def __init__(self, store: Store, actor: Actor) -> None:
        self.store = store
        self.actor = actor

    async def _record(
        self,
        action: str,
        object_type: str,
        object_id: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        old, new = _changes(before, after)
        await self.store.record_audit(
            AuditEntry(
                time=now_rfc3339(),
                actor=self.actor.kind,
                client=self.actor.client,
                action=action,
                object_type=object_type,
                object_id=object_id,
                before=old,
                after=new,
            )
        )

    # -- organizations ----------------------------------------------------------------
    async def create_organization(self, org_id: str, credits: Decimal) -> Organization:
        org = await self.store.create_organization(org_id, credits)
        await self._record("create", "organization", org.id, None, _organization_fields(org))
        return org

    async def set_credits(self, org_id: str, credits: Decimal) -> Organization:
        before = _organization_fields(await self.store.get_organization(org_id))
        org = await self.store.set_credits(org_id, credits)
        await self._record("set_credits", "organization", org.id, before, _organization_fields(org))
        return org

    async def rename_organization(self, org_id: str, name: str) -> Organization:
        before = _organization_fields(await self.store.get_organization(org_id))
        org = await self.store.rename_organization(org_id, name)
        await self._record("rename", "organization", org.id, before, _organization_fields(org))
        return org

    async def get_organization(self, org_id: str) -> Organization:
        return await self.store.get_organization(org_id)

    async def list_organizations(self) -> list[Organization]:
        return await self.store.list_organizations()

    # -- projects ---------------------------------------------------------------------
    async def create_project(self, project_id: str, org_id: str, mode: ProjectMode) -> Project:
        project = await self.store.create_project(project_id, org_id, mode)
        await self._record("create", "project", project.id, None, project_fields(project))
        return project

    async def get_project(self, project_id: str) -> Project:
        return await self.store.get_project(project_id)

    async def list_projects(self) -> list[Project]:
        return await self.store.list_projects()

    async def set_project_mode(self, project_id: str, mode: ProjectMode) -> Project:
        before = project_fields(await self.store.get_project(project_id))
        project = await self.store.set_project_mode(project_id, mode)
        await self._record("set_mode", "project", project.id, before, project_fields(project))
        return project

    async def set_provider_key(
        self, project_id: str, provider: str, source: dict[str, str] | None
    ) -> Project:
        before = project_fields(await self.store.get_project(project_id))
        project = await self.store.set_provider_key(project_id, provider, source)
        await self._record(
            "set_provider_key", "project", project.id, before, project_fields(project)
        )
        return project

    async def archive_project(self, project_id: str) -> Project:
        before = project_fields(await self.store.get_project(project_id))
        project = await self.store.archive_project(project_id)
        await self._record("archive", "project", project.id, before, project_fields(project))
        return project

    async def rename_project(self, project_id: str, name: str) -> Project:
        before = project_fields(await self.store.get_project(project_id))
        project = await self.store.rename_project(project_id, name)
        await self._record("rename", "project", project.id, before, project_fields(project))
        return project

    async def set_project_budget(self, project_id: str, budget: Budget | None) -> Project:
        before = project_fields(await self.store.get_project(project_id))
        project = await self.store.set_project_budget(project_id, budget)
        await self._record("set_budget", "project", project.id, before, project_fields(project))
        return project

    async def add_project_rule(
        self, project_id: str, rule_type: RuleType, values: tuple[str, ...]
    ) -> ProjectRule:
        rule = await self.store.add_project_rule(project_id, rule_type, values)
        await self._record("create", "project_rule", rule.id, None, _project_rule_fields(rule))
        return rule

    async def list_project_rules(self, project_id: str) -> list[ProjectRule]:
        return await self.store.list_project_rules(project_id)

    async def set_project_rule_status(
        self, project_id: str, rule_id: str, status: RuleStatus
    ) -> ProjectRule:
        rules = {r.id: r for r in await self.store.list_project_rules(project_id)}
        rule = await self.store.set_project_rule_status(project_id, rule_id, status)
        old = rules.get(rule_id)
        await self._record(
            "set_status",
            "project_rule",
            rule.id,
            None if old is None else _project_rule_fields(old),
            _project_rule_fields(rule),
        )
        return rule

    async def remove_project_rule(self, project_id: str, rule_id: str) -> None:
        rules = {r.id: r for r in await self.store.list_project_rules(project_id)}
        await self.store.remove_project_rule(project_id, rule_id)
        old = rules.get(rule_id)
        before = _project_rule_fields(old) if old else {"project_id": project_id}
        await self._record("remove", "project_rule", rule_id, before, None)

    # -- keys -------------------------------------------------------------------------
    async def create_key(
        self,
        project_id: str,
        usage_limit: Decimal | None,
        description: str,
        *,
        expires_at: str | None = None,
        rate_limits: RateLimits = NO_RATE_LIMITS,
    ) -> tuple[ApiKey, str]:
        key, token = await self.store.create_key(
            project_id, usage_limit, description, expires_at=expires_at, rate_limits=rate_limits
        )
        await self._record("create", "key", key.id, None, key_fields(key))
        return key, token

    async def get_key(self, key_id: str) -> ApiKey:
        return await self.store.get_key(key_id)

    async def list_keys(self, project_id: str | None = None) -> list[ApiKey]:
        return await self.store.list_keys(project_id)

    async def set_key_status(self, key_id: str, status: KeyStatus) -> ApiKey:
        before = key_fields(await self.store.get_key(key_id))
        key = await self.store.set_key_status(key_id, status)
        await self._record("set_status", "key", key.id, before, key_fields(key))
        return key

    async def set_usage_limit(self, key_id: str, usage_limit: Decimal | None) -> ApiKey:
        before = key_fields(await self.store.get_key(key_id))
        key = await self.store.set_usage_limit(key_id, usage_limit)
        await self._record("set_usage_limit", "key", key.id, before, key_fields(key))
        return key

    async def rate_windows(self, key_id: str, project_id: str, now: float) -> RateState:
        return await self.store.rate_windows(key_id, project_id, now)

    async def set_key_rate_limits(self, key_id: str, limits: RateLimits) -> ApiKey:
        before = key_fields(await self.store.get_key(key_id))
        key = await self.store.set_key_rate_limits(key_id, limits)
        await self._record("set_rate_limits", "key", key.id, before, key_fields(key))
        return key

    async def set_project_rate_limits(self, project_id: str, limits: RateLimits) -> Project:
        before = project_fields(await self.store.get_project(project_id))
        project = await self.store.set_project_rate_limits(project_id, limits)
        await self._record(
            "set_rate_limits", "project", project.id, before, project_fields(project)
        )
        return project

    async def set_key_budget(self, key_id: str, budget: Budget | None) -> ApiKey:
        before = key_fields(await self.store.get_key(key_id))
        key = await self.store.set_key_budget(key_id, budget)
        await self._record("set_budget", "key", key.id, before, key_fields(key))
        return key

    async def budget_usage(
        self, key: tuple[str, str] | None, project: tuple[str, str] | None
    ) -> tuple[WindowUsage, WindowUsage]:
        return await self.store.budget_usage(key, project)

    async def rename_key(self, key_id: str, description: str) -> ApiKey:
        before = key_fields(await self.store.get_key(key_id))
        key = await self.store.rename_key(key_id, description)
        await self._record("rename", "key", key.id, before, key_fields(key))
        return key

    async def set_key_expiry(self, key_id: str, expires_at: str | None) -> ApiKey:
        before = key_fields(await self.store.get_key(key_id))
        key = await self.store.set_key_expiry(key_id, expires_at)
        await self._record("set_expiry", "key", key.id, before, key_fields(key))
        return key

    async def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[ApiKey, str]:
        key, token = await self.store.rotate_key(key_id, grace_seconds)
        # INVARIANT: neither token nor hash: that a rotation happened, and the grace.
        await self._record(
            "rotate",
            "key",
            key.id,
            {"token": "previous"},
            {"token": "rotated", "grace_seconds": grace_seconds},
        )
        return key, token

    # -- IAM rules --------------------------------------------------------------------
    async def add_rule(self, key_id: str, rule_type: RuleType, values: tuple[str, ...]) -> IamRule:
        rule = await self.store.add_rule(key_id, rule_type, values)
        await self._record("create", "rule", rule.id, None, _rule_fields(rule))
        return rule

    async def list_rules(self, key_id: str) -> list[IamRule]:
        return await self.store.list_rules(key_id)

    async def set_rule_status(self, key_id: str, rule_id: str, status: RuleStatus) -> IamRule:
        rules = {r.id: r for r in await self.store.list_rules(key_id)}
        rule = await self.store.set_rule_status(key_id, rule_id, status)
        old = rules.get(rule_id)
        await self._record(
            "set_status",
            "rule",
            rule.id,
            None if old is None else _rule_fields(old),
            _rule_fields(rule),
        )
        return rule

    async def remove_rule(self, key_id: str, rule_id: str) -> None:
        rules = {rule.id: rule for rule in await self.store.list_rules(key_id)}
        await self.store.remove_rule(key_id, rule_id)
        removed = rules.get(rule_id)
        before = _rule_fields(removed) if removed else {"key_id": key_id}
        await self._record("remove", "rule", rule_id, before, None)

    async def key_activity(self, key_ids: list[str] | None = None) -> dict[str, KeyActivity]:
        return await self.store.key_activity(key_ids)

    async def protect_secrets(self) -> tuple[int, int]:
        hashes, values = await self.store.protect_secrets()
        # Counts only: what was converted is exactly what must never be written here.
        await self._record(
            "protect_secrets",
            "gateway",
            "secrets",
            None,
            {"token_hashes_keyed": hashes, "provider_keys_encrypted": values},
        )
        return hashes, values

    # -- the log itself ---------------------------------------------------------------
    async def list_audit(
        self, since: str | None = None, object_filter: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        return await self.store.list_audit(since, object_filter, limit)
