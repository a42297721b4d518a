"""Building the policy's input document from request facts and the key's context (pure).

No I/O and no clock here: the caller passes the time and the client address, so the
same facts always give the same document (docs/architecture.md §3).
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.documents import (
    GatewayInfo,
    IamRuleDocument,
    InputDocument,
    KeyDocument,
    OrganizationDocument,
    ProjectDocument,
    RequestDocument,
)
from proxy.store.base import IamRule, KeyContext, ProjectRule

__all__ = ["build_input", "gateway_info"]


def gateway_info(credentialed: Iterable[str]) -> GatewayInfo:
    """The gateway's own credentials, `mock` always included, sorted for stable output."""
    return GatewayInfo(credentialed_providers=tuple(sorted({"mock", *credentialed})))


def build_input(
    request: RequestDocument, context: KeyContext | None, gateway: GatewayInfo
) -> InputDocument:
    """The input document: `key`/`project`/`organization` are null for an unknown token."""
    if context is None:
        return InputDocument(request=request, gateway=gateway)
    key = context.key
    project = context.project
    organization = context.organization
    return InputDocument(
        request=request,
        key=KeyDocument(
            id=key.id,
            status=key.status,
            # INVARIANT: the settled figures: the documented 401 / 402 answer only when
            # they alone decide; in-flight reservations are the store's admission's
            # business (contract §6), shown here for policies that want them.
            usage=key.usage,
            reserved=context.reserved,
            usage_limit=key.usage_limit,
            project_id=key.project_id,
            iam_rules=tuple(_rule(rule) for rule in context.rules),
            expires_at=key.expires_at,
            token_expires_at=context.token_expires_at,
        ),
        project=ProjectDocument(
            id=project.id,
            status=project.status,
            mode=project.mode,
            provider_keys=tuple(sorted(project.provider_keys)),
            iam_rules=tuple(_rule(rule) for rule in context.project_rules),
        ),
        organization=OrganizationDocument(
            id=organization.id,
            credits=organization.credits,
            credits_reserved=context.credits_reserved,
        ),
        gateway=gateway,
    )


def _rule(rule: IamRule | ProjectRule) -> IamRuleDocument:
    return IamRuleDocument(id=rule.id, type=rule.type, values=rule.values, status=rule.status)
