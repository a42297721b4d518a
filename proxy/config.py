"""The gateway's configuration: one optional YAML file, each field overridable by env.

Precedence, lowest first: the documented default, the YAML file, the environment
variable `GATEWAY_<FIELD>` (upper case, e.g. `GATEWAY_DATABASE`). An empty
environment variable counts as unset. The admin token is the one exception: it
comes only from `GATEWAY_ADMIN_TOKEN`, never from a file, so it cannot be committed
by accident.

A bad value raises `ConfigError` naming the field and where the value came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

__all__ = [
    "BUILTIN_PROVIDERS",
    "ConfigError",
    "GatewayConfig",
    "ProviderConfig",
    "default_policy_dir",
    "load_config",
]

ENV_PREFIX = "GATEWAY_"
ADMIN_TOKEN_ENV = "GATEWAY_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret
SECRET_KEY_ENV = "GATEWAY_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
MIN_SECRET_KEY_LENGTH = 32
CONFIG_PATH_ENV = "GATEWAY_CONFIG"

# Providers the gateway serves without any configuration; `mock` answers locally.
BUILTIN_PROVIDERS = frozenset({"mock"})


def default_policy_dir() -> str:
    """The `policies/` directory shipped next to the `proxy` package (repo root)."""
    return str(Path(__file__).resolve().parent.parent / "policies")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field and the fix."""


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream, OpenAI-compatible provider the gateway can forward to."""

    id: str
    """Provider id as used in the catalog (`openai`, `azure`, ...)."""

    base_url: str
    """Base URL up to and including the API version, e.g. `https://api.openai.com/v1`."""

    api_key_env: str | None = None
    """NAME of the environment variable holding the gateway's own credential for this
    provider (never the secret itself). Unset or empty variable: the gateway holds no
    credential, so only projects with their own provider key can use it."""


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything `gateway serve` and the admin commands need; every field optional."""

    host: str = "127.0.0.1"
    """Address `gateway serve` listens on."""

    port: int = 4000
    """TCP port `gateway serve` listens on."""

    workers: Annotated[int, msgspec.Meta(ge=1)] | Literal["auto"] = 1
    """Processes `gateway serve` runs on its port (`--workers` overrides it): a number,
    or `auto` for one per core the gateway may use. They share the database (and
    Redis), so usage stays exact across them; each reloads the policy on its own."""

    database: str = "sqlite:///./gateway.db"
    """Key store URL: `sqlite:///relative/or/absolute.db` or `postgresql://...`."""

    usage_store: str | None = None
    """Optional fast usage ledger, e.g. `redis://127.0.0.1:6379/0`; None keeps usage in
    the database."""

    policy_dir: str = msgspec.field(default_factory=default_policy_dir)
    """Directory of `*.rego` / `*.yaml` policy files (default: the shipped `policies/`)."""

    catalog: str | None = None
    """Model catalog YAML, loaded as `data.catalog`; None means `<policy_dir>/catalog.yaml`."""

    providers: tuple[ProviderConfig, ...] = ()
    """Upstream providers; the built-in `mock` provider is always available in addition."""

    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted; bigger bodies get 413 before any other work."""

    max_json_depth: Annotated[int, msgspec.Meta(ge=1)] = 64
    """Deepest nesting of arrays/objects accepted in a request body; deeper gets 400
    before the body is decoded (a nesting bomb cannot exhaust the stack)."""

    header_read_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Seconds a client has to send a request's headers, from connecting (or from the
    first byte of a next request on a kept-alive connection): then 408, or the
    connection is closed if nothing came."""

    body_read_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Seconds a client has to send a request's body once its headers came: then 408."""

    keep_alive_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """Seconds an idle kept-alive connection stays open after a response."""

    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1000
    """Client connections open at once; one more is answered 503 and closed."""

    upstream_connect_timeout: float = 10.0
    """Seconds to wait for a TCP/TLS connection to a provider before answering 502."""

    upstream_read_timeout: float = 120.0
    """Seconds to wait for the provider's response (or the next stream chunk) before 504."""

    upstream_client: Literal["native", "aiohttp"] = "native"
    """The HTTP client that reaches the providers: `native` (httptools on asyncio
    protocols, proxy/http_client.py; less CPU per call) or `aiohttp` (the fallback).
    See README.md, "Upstream client"."""

    error_format: Literal["documented", "openai"] = "documented"
    """Shape of the gateway's own error bodies: the documented `{"error": true, ...}`
    or the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`."""

    default_max_tokens: int = 4096
    """Completion tokens assumed when a request sets no `max_tokens`, to size the usage
    reservation held while the request is in flight."""

    reservation_ttl_seconds: float = 600.0
    """Seconds an unsettled usage reservation keeps counting against a key's limit
    (and its organization's credits) before it is reclaimed; bounds what a crashed
    gateway holds back. Longer than the slowest request you expect."""

    admission_wait_seconds: float = 10.0
    """Longest a request waits for other requests' in-flight reservations to settle when
    only they keep it from fitting a key's usage limit or the organization's credits;
    then it gets 429 with `Retry-After`. Settled figures alone answer 401 / 402 at once."""

    budget_time_zone: str = "UTC"
    """IANA time zone of the calendar windows of period budgets (`Europe/Berlin`): a
    `day` budget starts again at local midnight, a `week` one on Monday's, a `month`
    one on the 1st. Changing it starts new windows (at zero usage)."""

    reload_interval: float = 1.0
    """Seconds between checks of the policy files for changes (0 disables polling;
    SIGHUP always reloads)."""

    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDR networks of the reverse proxies in front of the gateway. Only
    a request from one of them has its `X-Forwarded-For` / `Forwarded` header believed
    for the client address (throttle, decision log, policy input); by default none,
    so the socket's peer is always the client. In the environment: comma-separated."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Level of the gateway's own logs (decision log lines are INFO)."""

    secret_key: str | None = None
    """Key for secrets at rest; read only from `GATEWAY_SECRET_KEY` (32+ characters).
    Set: token hashes are keyed (HMAC) and provider keys given by value are encrypted
    (`proxy.secret_box`); unset: the gateway warns at start."""

    admin_token: str | None = None
    """Token for the `/admin` HTTP API; read only from `GATEWAY_ADMIN_TOKEN`. None
    disables the admin API."""

    def __post_init__(self) -> None:
        from proxy.forwarded import parse_networks

        parse_networks(self.trusted_proxies)  # ValueError names the bad entry
        from proxy.budgets import time_zone

        time_zone(self.budget_time_zone)  # ValueError (BudgetError) names the field
        if self.secret_key is not None and len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"{SECRET_KEY_ENV} must be at least {MIN_SECRET_KEY_LENGTH} characters; generate "
                "one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )

    @property
    def catalog_path(self) -> str:
        """The catalog file actually used."""
        return self.catalog or str(Path(self.policy_dir) / "catalog.yaml")


_FIELDS: tuple[str, ...] = GatewayConfig.__struct_fields__
# Fields whose environment value is itself YAML (a list), not a plain scalar.
_STRUCTURED_FIELDS = frozenset({"providers", "trusted_proxies"})
# Of those, fields whose environment value may also be a plain comma-separated list.
_LIST_FIELDS = frozenset({"trusted_proxies"})
_ERROR_PATH = re.compile(r"at `\$\.(\w+)((?:\[\d+\]|\.\w+)*)`")


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read the YAML file (if any; default `$GATEWAY_CONFIG`), apply env overrides, validate."""
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(CONFIG_PATH_ENV) or None
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    file_lines: dict[str, int] = {}
    if path is not None:
        raw, file_lines = _read_file(path)
        origin = dict.fromkeys(raw, path)
    for name in _FIELDS:
        env_name = ENV_PREFIX + name.upper()
        value = env.get(env_name)
        if value:
            raw[name] = _parse_env_value(name, env_name, value)
            origin[name] = f"environment variable {env_name}"
            file_lines.pop(name, None)
    try:
        return msgspec.convert(raw, GatewayConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, origin, file_lines)) from None


def _read_file(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The file's fields and the line each is set on (for messages)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config file ({exc.strerror}); "
            "check the path given to --config or GATEWAY_CONFIG"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: the config file is not valid YAML; fix the syntax") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of field: value")
    unknown = sorted(str(key) for key in data if key not in _FIELDS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown field `{unknown[0]}`; known fields are: {', '.join(_FIELDS)}"
        )
    for field, variable in (("admin_token", ADMIN_TOKEN_ENV), ("secret_key", SECRET_KEY_ENV)):
        if field in data:
            raise ConfigError(
                f"{path}: field `{field}` is not allowed in a file; "
                f"set the environment variable {variable} instead"
            )
    return data, _field_lines(text)


def _field_lines(text: str) -> dict[str, int]:
    """The 1-based line of each top-level field of a config file that parsed as a mapping."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _value in root.value}


def _parse_env_value(name: str, env_name: str, value: str) -> Any:
    if name in _LIST_FIELDS and not value.lstrip().startswith("["):
        return [item.strip() for item in value.split(",") if item.strip()]
    if name not in _STRUCTURED_FIELDS:
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(
            f"environment variable {env_name}: expected a YAML/JSON list such as "
            '`[{"id": "openai", "base_url": "https://api.openai.com/v1"}]`'
        ) from None


def _explain(
    exc: msgspec.ValidationError, origin: dict[str, str], file_lines: dict[str, int]
) -> str:
    message = str(exc)
    match = _ERROR_PATH.search(message)
    if match is None:
        return _explain_checked_field(message, origin, file_lines)
    field = match.group(1)
    source = origin.get(field, "configuration")
    detail = message.split(" - at ")[0]
    where = f"{source}: field `{field}{match.group(2)}`"
    return f"{where}: {detail} (fields are documented in README.md, Configuration)"


def _explain_checked_field(message: str, origin: dict[str, str], file_lines: dict[str, int]) -> str:
    """A problem found after the types were read (`GatewayConfig.__post_init__`), whose
    message starts with the field's name: say where the value came from (the variable,
    or the file and line) and how to put it right there."""
    field, sep, detail = message.partition(": ")
    if not sep or field not in _FIELDS:
        return f"invalid configuration: {message}"
    source = origin.get(field)
    if source is None:
        return f"invalid configuration: field `{field}` (the default): {detail}"
    if source.startswith("environment variable "):
        variable = source.removeprefix("environment variable ")
        return (
            f"{source}: field `{field}`: {detail}; set {variable} to one, or unset it "
            "(then the config file's value or the default applies)"
        )
    line = file_lines.get(field)
    where = "" if line is None else f" (line {line})"
    return f"config file {source}{where}: field `{field}`: {detail}; correct it in that file"
