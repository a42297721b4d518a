"""The Litestar application: routes, lifespan (store, upstream client, policy reload).

App-wide objects live in `app.state` from the lifespan and are injected into the
handlers; nothing per request is kept outside the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.response import Stream

from proxy.admin_api import admin_router
from proxy.api_route import (
    OPERATION_OPT,
    ApiServing,
    ClientWatches,
    api_fast_path,
    api_middleware,
)
from proxy.budgets import time_zone
from proxy.config import SECRET_KEY_ENV, GatewayConfig
from proxy.dashboard import DashboardPlugin
from proxy.forwarded import TrustedProxies
from proxy.gateway import Gateway, SecondClock
from proxy.http_client import NativeUpstream
from proxy.key_activity import DEFAULT_ACTIVITY_INTERVAL, ActivityRecorder
from proxy.key_cache import KeyCachingStore
from proxy.metrics import Metrics
from proxy.openapi_docs import (
    api_operation,
    chat_request_schema,
    completion_request_schema,
    count_tokens_request_schema,
    embedding_request_schema,
    messages_request_schema,
    responses_request_schema,
)
from proxy.policy import PolicyHolder
from proxy.providers import ProviderDirectory
from proxy.secret_box import KEYED_PREFIX, box_for
from proxy.store.base import Store, StoreError
from proxy.upstream import AiohttpUpstream, UpstreamClient
from proxy.worker_metrics import PUBLISH_INTERVAL, WorkerShare

__all__ = ["StoreFactory", "create_app", "open_configured_store"]

logger = logging.getLogger("gateway")
# Longest a stopping gateway waits for its last key-activity flush (proxy.key_activity).
_ACTIVITY_STOP_S = 10.0

StoreFactory = Callable[[GatewayConfig], Awaitable[Store]]


async def open_configured_store(config: GatewayConfig) -> Store:
    """The configured store, migrated, with the default organization and project."""
    from proxy.store import open_store

    store = open_store(
        config.database,
        config.usage_store,
        reservation_ttl=config.reservation_ttl_seconds,
        secrets=box_for(config.secret_key),
    )
    await store.migrate()
    await store.ensure_defaults()
    if config.secret_key:
        hashes, values = await store.protect_secrets()
        if hashes or values:
            logger.info(
                "secrets at rest: %d token hashes keyed, %d provider keys encrypted",
                hashes,
                values,
            )
    else:
        try:
            await _refuse_protected_secrets(store)
        except StoreError:
            await store.close()
            raise
    return store


async def _refuse_protected_secrets(store: Store) -> None:
    """Without the secret key, a database written with one would answer every request
    with 401 (keyed hashes never match) and fail every stored provider key: say so at
    start instead."""
    keyed = sum(key.token_hash.startswith(KEYED_PREFIX) for key in await store.list_keys())
    encrypted = sum(
        "encrypted" in source
        for project in await store.list_projects()
        for source in project.provider_keys.values()
    )
    if keyed or encrypted:
        raise StoreError(
            f"the database holds {keyed} keyed token hashes and {encrypted} encrypted "
            f"provider keys, written with {SECRET_KEY_ENV}; set {SECRET_KEY_ENV} to the "
            "value they were written with"
        )


def _api_routes() -> list[Any]:
    """The API operations: declared here for routing and OpenAPI, answered by
    `proxy.api_route.api_middleware` (plain ASGI; see that module for why)."""

    def unreachable() -> RuntimeError:
        return RuntimeError("answered by proxy.api_route.api_middleware, never by this handler")

    @post(
        "/v1/chat/completions",
        operation_class=api_operation(chat_request_schema(), streams=True),
        summary="Chat completion (OpenAI-compatible), streamed with `stream: true`",
        status_code=200,
        middleware=[api_middleware],
        opt={OPERATION_OPT: "chat.completions"},
    )
    async def chat_completions() -> Response[bytes] | Stream:
        raise unreachable()

    @post(
        "/v1/completions",
        operation_class=api_operation(completion_request_schema(), streams=True),
        summary="Text completion (OpenAI-compatible)",
        status_code=200,
        middleware=[api_middleware],
        opt={OPERATION_OPT: "completions"},
    )
    async def completions() -> Response[bytes] | Stream:
        raise unreachable()

    @post(
        "/v1/embeddings",
        operation_class=api_operation(embedding_request_schema()),
        summary="Embeddings (OpenAI-compatible)",
        status_code=200,
        middleware=[api_middleware],
        opt={OPERATION_OPT: "embeddings"},
    )
    async def embeddings() -> Response[bytes] | Stream:
        raise unreachable()

    @post(
        "/v1/responses",
        operation_class=api_operation(responses_request_schema(), streams=True),
        summary="OpenAI Responses API, streamed with `stream: true`",
        status_code=200,
        middleware=[api_middleware],
        opt={OPERATION_OPT: "responses"},
    )
    async def responses() -> Response[bytes] | Stream:
        raise unreachable()

    @post(
        "/v1/messages",
        operation_class=api_operation(
            messages_request_schema(), streams=True, anthropic_errors=True
        ),
        summary="Anthropic Messages API (`x-api-key` or Bearer), streamed with `stream: true`",
        status_code=200,
        middleware=[api_middleware],
        opt={OPERATION_OPT: "messages"},
    )
    async def messages() -> Response[bytes] | Stream:
        raise unreachable()

    @post(
        "/v1/messages/count_tokens",
        operation_class=api_operation(count_tokens_request_schema(), anthropic_errors=True),
        summary="Anthropic token counting for a Messages request (free; IAM operation `messages`)",
        status_code=200,
        middleware=[api_middleware],
        opt={OPERATION_OPT: "messages.count_tokens"},
    )
    async def count_tokens() -> Response[bytes] | Stream:
        raise unreachable()

    @get(
        "/v1/models",
        operation_class=api_operation(None),
        summary="The models this key may use (OpenAI list format)",
        middleware=[api_middleware],
        opt={OPERATION_OPT: "models.list"},
    )
    async def models() -> Response[bytes] | Stream:
        raise unreachable()

    return [chat_completions, completions, embeddings, responses, messages, count_tokens, models]


@get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: store open, policy loaded, upstream client started")
async def readyz(state: State) -> Response[dict[str, str]]:
    ready = getattr(state, "gateway", None) is not None
    status = 200 if ready else 503
    return Response({"status": "ready" if ready else "starting"}, status_code=status)


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics_endpoint(state: State) -> str:
    text = _render_metrics(state)
    share: WorkerShare | None = state.worker_share
    if share is None:
        return text

    def publish_and_collect() -> str:
        share.publish(text)
        return share.collect()

    return await asyncio.to_thread(publish_and_collect)


def _render_metrics(state: State) -> str:
    metrics: Metrics = state.metrics
    upstream: UpstreamClient = state.upstream
    gauges = {
        "gateway_upstream_responses_open": (
            "Upstream responses in flight (each holds a pooled connection).",
            float(upstream.responses_open),
        )
    }
    return metrics.render(gauges)


async def _publish_metrics(state: State, share: WorkerShare) -> None:
    """A worker's series reach the other workers' scrapes (see `proxy.worker_metrics`)."""
    while True:
        text = _render_metrics(state)
        try:
            await asyncio.to_thread(share.publish, text)
        except OSError as exc:
            logger.warning("worker %s: cannot publish metrics: %s", share.worker, exc)
        await asyncio.sleep(PUBLISH_INTERVAL)


def _provide_gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


def _error_handler(config: GatewayConfig) -> Callable[..., Response[bytes]]:
    from proxy.errors import error_body

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        headers: dict[str, str] = {}
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
            headers = dict(exc.headers or {})  # Allow on 405, Retry-After on 429
        else:
            logger.error("unhandled error on %s", request.url.path, exc_info=exc)
            status, message = 500, "Internal error: see the gateway log"
        body = error_body(status, message, config.error_format)
        return Response(
            content=body, status_code=status, media_type="application/json", headers=headers
        )

    return handle


def create_app(
    config: GatewayConfig,
    *,
    policy: PolicyHolder | None = None,
    store_factory: StoreFactory = open_configured_store,
    worker_share: WorkerShare | None = None,
    clock: Callable[[], str] | None = None,
    activity_interval: float = DEFAULT_ACTIVITY_INTERVAL,
) -> Litestar:
    """The app; loading the policy here means a bad policy fails before serving.
    `worker_share` is set in the processes of `gateway serve --workers N`; `clock`
    (tests) is the request time the policy sees, RFC 3339 UTC; `activity_interval` how
    often per-key activity counts reach the store (proxy.key_activity)."""
    holder = policy or PolicyHolder(config.policy_dir, config.catalog_path)
    metrics = Metrics((("worker", worker_share.worker),) if worker_share else ())
    upstream: UpstreamClient
    if config.upstream_client == "aiohttp":
        upstream = AiohttpUpstream(config.upstream_connect_timeout, config.upstream_read_timeout)
    else:
        upstream = NativeUpstream(config.upstream_connect_timeout, config.upstream_read_timeout)
    providers = ProviderDirectory(config)
    serving = ApiServing(TrustedProxies(config.trusted_proxies))

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not config.secret_key:
            logger.warning(
                "%s is not set: provider keys given by value are stored in plain text and "
                "token hashes are unkeyed; set it (32+ random characters) and restart, "
                "see README.md, Secrets at rest",
                SECRET_KEY_ENV,
            )
        store = KeyCachingStore(await store_factory(config))
        await upstream.start()
        app.state.store = store
        # One clock for the policy's request time and the keys' "last used": it formats
        # the time once a second, not once per request.
        request_clock = clock or SecondClock()
        activity = ActivityRecorder(store, request_clock)
        app.state.activity = activity
        recording = asyncio.create_task(activity.run(activity_interval))
        # Watches of this loop, before the gateway: requests use both.
        serving.watches = ClientWatches()
        app.state.gateway = serving.gateway = Gateway(
            config=config,
            store=store,
            policy=holder,
            upstream=upstream,
            providers=providers,
            metrics=metrics,
            clock=request_clock,
            activity=activity,
        )
        watcher = None
        if config.reload_interval > 0:
            watcher = asyncio.create_task(holder.watch(config.reload_interval))
        reloads: set[asyncio.Task[bool]] = set()
        _listen_for_sighup(holder, reloads)
        background = [watcher] if watcher is not None else []
        if worker_share is not None:
            background.append(asyncio.create_task(_publish_metrics(app.state, worker_share)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await _stop_recording(activity, recording)
            await upstream.stop()
            await store.close()

    handler = _error_handler(config)
    api_routes = _api_routes()
    routes: list[Any] = [*api_routes, healthz, readyz, metrics_endpoint]
    if config.admin_token:
        routes.append(admin_router(config.admin_token))
    app = Litestar(
        route_handlers=routes,
        lifespan=[lifespan],
        dependencies={"gateway": Provide(_provide_gateway, sync_to_thread=False)},
        state=State(
            {
                "metrics": metrics,
                "upstream": upstream,
                "policy": holder,
                "error_format": config.error_format,
                # What the admin API and the dashboard show a budget's window with: the
                # gateway's own zone and clock, so they show the window requests see.
                "budget_zone": time_zone(config.budget_time_zone),
                "budget_clock": clock or SecondClock(),
                "trusted_proxies": serving.proxies,
                "api_serving": serving,
                "worker_share": worker_share,
            }
        ),
        exception_handlers={HTTPException: handler, Exception: handler},
        request_max_body_size=None,
        openapi_config=OpenAPIConfig(title="LLM gateway", version="0.1.0"),
        plugins=[DashboardPlugin(config.admin_token)] if config.admin_token else [],
        logging_config=None,
    )
    app.asgi_handler = api_fast_path(app.asgi_handler, api_routes, serving)
    return app


async def _stop_recording(activity: ActivityRecorder, recording: asyncio.Task[None]) -> None:
    """Every request has finished: the recorder's last flush counts them all. A store
    that does not answer must not hold the shutdown: after `_ACTIVITY_STOP_S` the
    counts still pending are given up, and the log says so."""
    activity.stop()
    done, _ = await asyncio.wait([recording], timeout=_ACTIVITY_STOP_S)
    if not done:
        recording.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recording
        logger.warning(
            "the last key activity counts were not written within %.0f s (the store did not "
            "answer); last-used times and request counts miss this instance's last requests",
            _ACTIVITY_STOP_S,
        )


def _listen_for_sighup(holder: PolicyHolder, running: set[asyncio.Task[bool]]) -> None:
    loop = asyncio.get_running_loop()

    def on_sighup() -> None:
        task = loop.create_task(holder.reload_off_loop())
        running.add(task)  # keep a reference until it is done
        task.add_done_callback(running.discard)

    # Only possible in the main thread of a Unix process (not in test servers on threads).
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
