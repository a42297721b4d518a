"""Where a chosen provider lives and which credential pays for the request.

The policy decides *whether* and *who pays* (`decision.billing`); this module only
turns that into a URL and a secret: the project's own key for `provider-key`, the
gateway's key from its configured environment variable for `credits`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from proxy.catalog import Catalog
from proxy.config import BUILTIN_PROVIDERS, GatewayConfig
from proxy.documents import Decision, Operation
from proxy.secret_box import SecretUnavailable, box_for, open_source
from proxy.store.base import Project

__all__ = ["ProviderDirectory", "ProviderProblem", "Route"]

_PATHS: dict[Operation, str] = {
    "chat.completions": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "models.list": "/models",
    "responses": "/responses",
    "messages": "/messages",
    "messages.count_tokens": "/messages/count_tokens",
}


class ProviderProblem(Exception):
    """The decision names a provider the gateway cannot reach (a configuration mistake)."""


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """Where to send one request and with which secret (None for `mock`)."""

    provider: str
    url: str | None
    api_key: str | None


class ProviderDirectory:
    """Provider base URLs and gateway credentials, read from config and env once."""

    def __init__(self, config: GatewayConfig, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._environ = env
        self._secrets = box_for(config.secret_key)
        self._base_urls: dict[str, str] = {}
        self._gateway_keys: dict[str, str] = {}
        for provider in config.providers:
            self._base_urls[provider.id] = provider.base_url.rstrip("/")
            secret = env.get(provider.api_key_env, "") if provider.api_key_env else ""
            if secret:
                self._gateway_keys[provider.id] = secret

    @property
    def credentialed(self) -> tuple[str, ...]:
        """Providers the gateway itself can pay for (`mock` always)."""
        return tuple(sorted(BUILTIN_PROVIDERS | set(self._gateway_keys)))

    def route(
        self, decision: Decision, project: Project, operation: Operation, catalog: Catalog
    ) -> Route:
        """The URL and secret for the decision's provider; config wins over the catalog."""
        provider = decision.provider or ""
        if provider in BUILTIN_PROVIDERS:
            return Route(provider=provider, url=None, api_key=None)
        listed = catalog.providers.get(provider)
        base_url = self._base_urls.get(provider) or (listed.base_url if listed else None)
        if base_url is None:
            raise ProviderProblem(
                f"Provider {provider} has no base_url; "
                "add it under `providers` in the gateway config"
            )
        url = base_url.rstrip("/") + _PATHS[operation]
        if decision.billing == "provider-key":
            return Route(provider=provider, url=url, api_key=self._project_key(project, provider))
        return Route(provider=provider, url=url, api_key=self._gateway_keys.get(provider))

    def _project_key(self, project: Project, provider: str) -> str:
        source = project.provider_keys.get(provider, {})
        try:
            literal = open_source(source, self._secrets)
        except SecretUnavailable as exc:
            raise ProviderProblem(
                f"Provider key for {provider} in project {project.id}: {exc}"
            ) from None
        if literal is not None:
            return literal
        variable = source.get("env", "")
        secret = self._environ.get(variable, "") if variable else ""
        if not secret:
            raise ProviderProblem(
                f"Provider key for {provider} in project {project.id} is not available: "
                f"set the environment variable {variable or '(none configured)'} for the gateway"
            )
        return secret
