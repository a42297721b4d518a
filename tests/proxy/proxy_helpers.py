"""Arranging organizations, projects and keys for the end-to-end tests."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from proxy.store.base import ApiKey, KeyContext, Organization, Project, ProjectMode, RuleType

MSG_NO_KEY = (
    "Unauthorized: No API key provided. Expected 'Authorization: Bearer your-api-token' "
    "header or 'x-api-key: your-api-token' header"
)
MSG_INVALID = (
    "Unauthorized: Invalid LLMGateway API token. Please make sure the token is not deleted "
    "or disabled. Go to the LLMGateway 'API Keys' page to generate a new token."
)
MSG_LIMIT = "Unauthorized: LLMGateway API key reached its usage limit."
MSG_ARCHIVED = "Project has been archived and is no longer accessible"


class Tenant(msgspec.Struct, kw_only=True):
    org_id: str
    project_id: str
    key: ApiKey
    token: str


def make_tenant(
    admin: Any,
    *,
    mode: ProjectMode = "hybrid",
    credits: str = "10.00",
    usage_limit: str | None = None,
    rules: tuple[tuple[RuleType, tuple[str, ...]], ...] = (),
    provider_keys: dict[str, dict[str, str]] | None = None,
) -> Tenant:
    """A fresh organization, project and key (unique ids, so tests never share state)."""
    suffix = uuid.uuid4().hex[:10]
    store = admin.store
    org_id, project_id = f"org-{suffix}", f"proj-{suffix}"
    admin(store.create_organization(org_id, Decimal(credits)))
    admin(store.create_project(project_id, org_id, mode))
    for provider, source in (provider_keys or {}).items():
        admin(store.set_provider_key(project_id, provider, source))
    limit = None if usage_limit is None else Decimal(usage_limit)
    key, token = admin(store.create_key(project_id, limit, "e2e"))
    for rule_type, values in rules:
        admin(store.add_rule(key.id, rule_type, values))
    return Tenant(org_id=org_id, project_id=project_id, key=key, token=token)


def auth(token: str, style: str) -> dict[str, str]:
    """The token in the header `style` names: `bearer` or `x-api-key`."""
    if style == "bearer":
        return {"Authorization": f"Bearer {token}"}
    return {"x-api-key": token}


def documented(status: int, message: str) -> dict[str, Any]:
    return {"error": True, "status": status, "message": message}


def chat(model: str = "gpt-4", content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def admin_json(base_url: str, admin_token: str, method: str, path: str, body: Any = None) -> Any:
    """One admin API call (`/admin{path}`) that must succeed; its JSON answer."""
    response = httpx.request(
        method,
        f"{base_url}/admin{path}",
        json=body,
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def rate_header_pairs(*args: Any, **kwargs: Any) -> tuple[tuple[str, str], ...]:
    """`proxy.rate_headers.rate_lines(...)` as (name, value) pairs, as a sender that
    takes pairs gets them."""
    from proxy.rate_headers import header_pairs, rate_lines

    return header_pairs(rate_lines(*args, **kwargs))


def key_context(*, project: Project | None = None, **key_fields: Any) -> KeyContext:
    """A key's record as the store reads it, for tests of the proxy's parts without a
    store: an active key `key-1` of the `default` project and organization (10 credits,
    nothing reserved, no IAM rules). `key_fields` set the key's own fields (`status`,
    `budget`, `rate_limits`...), `project` the project."""
    fields: dict[str, Any] = {
        "id": "key-1",
        "token_hash": "hash-1",
        "display": "llmgtwy_…abcd",
        "project_id": "default",
        "status": "active",
        "usage_limit": None,
        "usage": Decimal(0),
        "description": "",
        "created_at": "2026-11-27T10:00:00Z",
        **key_fields,
    }
    return KeyContext(
        key=ApiKey(**fields),
        reserved=Decimal(0),
        rules=(),
        project=project or Project(id="default", organization_id="default"),
        organization=Organization(id="default", credits=Decimal(10)),
        credits_reserved=Decimal(0),
    )
