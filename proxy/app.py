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

import anyio
from litestar import Litestar, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.response import Stream

from proxy.admin_api import admin_router
from proxy.config import GatewayConfig
from proxy.dashboard import DashboardPlugin
from proxy.documents import Operation
from proxy.gateway import Gateway, Reply
from proxy.key_cache import KeyCachingStore
from proxy.metrics import Metrics
from proxy.openapi_docs import (
    api_operation,
    chat_request_schema,
    completion_request_schema,
    embedding_request_schema,
)
from proxy.policy import PolicyHolder
from proxy.providers import ProviderDirectory
from proxy.store.base import Store
from proxy.upstream import AiohttpUpstream

__all__ = ["StoreFactory", "create_app", "open_configured_store"]

logger = logging.getLogger("gateway")

StoreFactory = Callable[[GatewayConfig], Awaitable[Store]]


async def open_configured_store(config: GatewayConfig) -> Store:
    """The configured store, migrated, with the default organization and project."""
    from proxy.store import open_store

    store = open_store(config.database, config.usage_store)
    await store.migrate()
    await store.ensure_defaults()
    return store


def _to_response(reply: Reply) -> Response[bytes] | Stream:
    if reply.stream is not None:
        return Stream(
            reply.stream,
            status_code=reply.status,
            media_type=reply.content_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(reply.cleanup) if reply.cleanup else None,
        )
    return Response(content=reply.body, status_code=reply.status, media_type=reply.content_type)


async def _read_limited(request: Request[Any, Any, Any], limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _api_call(
    operation: Operation, request: Request[Any, Any, Any], limit: int
) -> Response[bytes] | Stream:
    # Read from the app state rather than injected: Litestar's dependency resolution
    # was a measurable share of each request (docs/benchmarks.md, "Tuning").
    gateway: Gateway = request.app.state.gateway
    body = b""
    if operation != "models.list":
        read = await _read_limited(request, limit)
        if read is None:
            reply = gateway.error(413, f"Request body too large: the limit is {limit} bytes")
            return _to_response(reply)
        body = read
    client_ip = request.client.host if request.client else ""
    answer = await _unless_client_leaves(
        request, gateway.handle(operation, request.headers, client_ip, body)
    )
    if answer is None:  # nobody is listening any more; this answer is never sent
        return _to_response(gateway.error(400, "Client closed the request"))
    return _to_response(answer)


async def _unless_client_leaves(
    request: Request[Any, Any, Any], work: Awaitable[Reply]
) -> Reply | None:
    """Run `work`, cancelling it (and so the upstream call) if the client disconnects
    first; None then. Streams are watched by Litestar itself once they start.

    One cancel scope and one plain watcher task: an anyio task group per request cost
    about a tenth of the gateway's CPU time in the benchmark (docs/benchmarks.md)."""
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            scope.cancel()  # honours the shielded scopes that settle or release usage

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            return await work
        finally:
            watcher.cancel()
    return None  # cancelled because the client left


def _api_routes(limit: int) -> list[Any]:
    @post(
        "/v1/chat/completions",
        operation_class=api_operation(chat_request_schema(), streams=True),
        summary="Chat completion (OpenAI-compatible), streamed with `stream: true`",
        status_code=200,
    )
    async def chat_completions(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
        return await _api_call("chat.completions", request, limit)

    @post(
        "/v1/completions",
        operation_class=api_operation(completion_request_schema(), streams=True),
        summary="Text completion (OpenAI-compatible)",
        status_code=200,
    )
    async def completions(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
        return await _api_call("completions", request, limit)

    @post(
        "/v1/embeddings",
        operation_class=api_operation(embedding_request_schema()),
        summary="Embeddings (OpenAI-compatible)",
        status_code=200,
    )
    async def embeddings(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
        return await _api_call("embeddings", request, limit)

    @get(
        "/v1/models",
        operation_class=api_operation(None),
        summary="The models this key may use (OpenAI list format)",
    )
    async def models(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
        return await _api_call("models.list", request, limit)

    return [chat_completions, completions, embeddings, models]


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
    metrics: Metrics = state.metrics
    upstream: AiohttpUpstream = state.upstream
    gauges = {
        "gateway_upstream_responses_open": (
            "Upstream responses in flight (each holds a pooled connection).",
            float(upstream.responses_open),
        )
    }
    return metrics.render(gauges)


def _provide_gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


def _error_handler(config: GatewayConfig) -> Callable[..., Response[bytes]]:
    from proxy.errors import error_body

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        else:
            logger.error("unhandled error on %s", request.url.path, exc_info=exc)
            status, message = 500, "Internal error: see the gateway log"
        body = error_body(status, message, config.error_format)
        return Response(content=body, status_code=status, media_type="application/json")

    return handle


def create_app(
    config: GatewayConfig,
    *,
    policy: PolicyHolder | None = None,
    store_factory: StoreFactory = open_configured_store,
) -> Litestar:
    """The app; loading the policy here means a bad policy fails before serving."""
    holder = policy or PolicyHolder(config.policy_dir, config.catalog_path)
    metrics = Metrics()
    upstream = AiohttpUpstream(config.upstream_connect_timeout, config.upstream_read_timeout)
    providers = ProviderDirectory(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = KeyCachingStore(await store_factory(config))
        await upstream.start()
        app.state.store = store
        app.state.gateway = Gateway(
            config=config,
            store=store,
            policy=holder,
            upstream=upstream,
            providers=providers,
            metrics=metrics,
        )
        watcher = None
        if config.reload_interval > 0:
            watcher = asyncio.create_task(holder.watch(config.reload_interval))
        reloads: set[asyncio.Task[bool]] = set()
        _listen_for_sighup(holder, reloads)
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await upstream.stop()
            await store.close()

    handler = _error_handler(config)
    routes: list[Any] = [*_api_routes(config.max_body_bytes), healthz, readyz, metrics_endpoint]
    if config.admin_token:
        routes.append(admin_router(config.admin_token))
    return Litestar(
        route_handlers=routes,
        lifespan=[lifespan],
        dependencies={"gateway": Provide(_provide_gateway, sync_to_thread=False)},
        state=State(
            {
                "metrics": metrics,
                "upstream": upstream,
                "policy": holder,
                "error_format": config.error_format,
            }
        ),
        exception_handlers={HTTPException: handler, Exception: handler},
        request_max_body_size=None,
        openapi_config=OpenAPIConfig(title="LLM gateway", version="0.1.0"),
        plugins=[DashboardPlugin(config.admin_token)] if config.admin_token else [],
        logging_config=None,
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
