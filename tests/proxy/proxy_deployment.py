"""A deployment for end-to-end tests: the real gateway (uvicorn) in front of a real upstream."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jsonschema  # type: ignore[import-untyped]
from proxy_test_servers import GatewayServer, LoopThread, UpstreamServer, free_port

from proxy.app import create_app
from proxy.config import GatewayConfig, ProviderConfig, default_policy_dir
from proxy.policy import DecideFn, Loader, PolicyHolder, engine_loader
from proxy.secret_box import SecretBox, box_for
from proxy.store.base import Store
from proxy.store.sqlite import SqliteStore

T = TypeVar("T")

UPSTREAM_KEY_ENV = "PROXY_TEST_OPENAI_KEY"
UPSTREAM_KEY = "sk-upstream-test-secret"
DOWN_KEY_ENV = "PROXY_TEST_GROQ_KEY"
READ_TIMEOUT = 2.0  # long enough never to fire on a loaded CI machine by accident
BODY_LIMIT = 64 * 1024


class AdminStore:
    """A second store on the gateway's database, for arranging keys and reading usage."""

    def __init__(self, database_path: str, secrets: SecretBox | None = None) -> None:
        self._thread = LoopThread()
        self.path = database_path
        self.store: Store = SqliteStore(database_path, secrets=secrets)

    def __call__(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._thread.run(coro)

    def close(self) -> None:
        self._thread.run(self.store.close())
        self._thread.stop()


class LogCapture(logging.Handler):
    """Every log record of the run, formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ValidatingLoader:
    """The real engine, with every input document checked against
    `schemas/input.schema.json` before it is evaluated."""

    def __init__(self, compile_policy: Loader = engine_loader) -> None:
        self._compile = compile_policy
        schema_path = Path(default_policy_dir()).parent / "schemas" / "input.schema.json"
        schema = json.loads(schema_path.read_text())
        self._validator = jsonschema.validators.validator_for(schema)(schema)
        self.checked = 0
        self.problems: list[str] = []

    def __call__(self, policy_dir: str, data: dict[str, Any]) -> DecideFn:
        decide = self._compile(policy_dir, data)

        def checked(document: dict[str, Any]) -> object:
            self.checked += 1
            # The engine takes arrays as tuples (`proxy.documents.engine_input`); the schema
            # describes the JSON document, so validate the document as JSON would carry it.
            as_json = json.loads(json.dumps(document))
            for error in self._validator.iter_errors(as_json):
                self.problems.append(f"{list(error.absolute_path)}: {error.message}")
            return decide(document)

        return checked


class Deployment:
    def __init__(
        self,
        gateway: GatewayServer,
        upstream: UpstreamServer,
        admin: AdminStore,
        logs: LogCapture,
        inputs: ValidatingLoader,
    ) -> None:
        self.inputs = inputs
        self.gateway = gateway
        self.upstream = upstream
        self.admin = admin
        self.logs = logs

    @property
    def url(self) -> str:
        return self.gateway.url


def gateway_config(tmp: Path, upstream: UpstreamServer, **overrides: Any) -> GatewayConfig:
    values: dict[str, Any] = {
        "database": f"sqlite:///{tmp / 'gateway.db'}",
        "policy_dir": default_policy_dir(),
        "providers": (
            ProviderConfig(id="openai", base_url=upstream.base_url, api_key_env=UPSTREAM_KEY_ENV),
            # Nothing listens there: the "upstream down" case.
            ProviderConfig(
                id="groq", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key_env=DOWN_KEY_ENV
            ),
        ),
        "upstream_connect_timeout": 2.0,
        "upstream_read_timeout": READ_TIMEOUT,
        "max_body_bytes": BODY_LIMIT,
        "reload_interval": 0.0,
        **overrides,
    }
    return GatewayConfig(**values)


@contextlib.contextmanager
def deployed(
    tmp: Path,
    clock: Callable[[], str] | None = None,
    compile_policy: Loader = engine_loader,
    **overrides: Any,
) -> Iterator[Deployment]:
    """Upstream + gateway (real engine, shipped policy) + admin store, all stopped after.
    `compile_policy`: `shipped_policies.loader` compiles the shipped policy once per
    session instead of once per deployment."""
    logs = LogCapture()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    saved = {name: os.environ.get(name) for name in (UPSTREAM_KEY_ENV, DOWN_KEY_ENV)}
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    os.environ[DOWN_KEY_ENV] = "gsk-down-test"
    upstream = UpstreamServer()
    upstream.start()
    config = gateway_config(tmp, upstream, **overrides)
    inputs = ValidatingLoader(compile_policy)
    holder = PolicyHolder(config.policy_dir, config.catalog_path, loader=inputs)
    gateway = GatewayServer(create_app(config, policy=holder, clock=clock), config)
    gateway.start()
    admin = AdminStore(str(tmp / "gateway.db"), box_for(config.secret_key))
    try:
        yield Deployment(gateway, upstream, admin, logs, inputs)
    finally:
        admin.close()
        gateway.stop()
        upstream.stop()
        root.removeHandler(logs)
        root.setLevel(previous_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
