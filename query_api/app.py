"""The query API's FastAPI app: wiring, lifespan, middleware, routes.

The read routes are query_api/routes.py, what they share query_api/service.py.
A middleware goes in with ``app.add_middleware`` next to RequestMetrics below; a
dependency every read needs goes on the router (see query_api/routes.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.telemetry import TelemetryConfig
from pymongo import monitoring

from query_api.consistency import ProjectionWatcher
from query_api.item_reads import AsyncItemReads
from query_api.metrics import observe_request
from query_api.models import Health, Ready
from query_api.repository import ReadRepository, StoreUnavailable
from query_api.routes import ok, problems, read_router
from query_api.service import QueryService
from query_api.settings import QueryApiSettings
from servicekit.auth import ADMIN, READ, Authenticator, require_scope
from servicekit.hardening import HttpSettings
from servicekit.logs import configure_logging
from servicekit.openapi import install_openapi
from servicekit.ops_routes import RequestMetrics, install_ops_routes
from servicekit.problems import install_problem_handlers
from servicekit.protect import AUTH_RESPONSES, merged, protect
from servicekit.settings import load_settings
from servicekit.store_client import async_store_client, store_client
from servicekit.store_types import StoreClient

log = logging.getLogger("query_api")
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

# How the operator routes are documented in the published OpenAPI document.
HEALTHZ_DOCS: dict[str, Any] = {
    "response_model": None,
    "responses": ok(Health),
    "description": "200 while the process is alive.",
}
READYZ_DOCS: dict[str, Any] = {
    "response_model": None,
    "responses": {**ok(Ready), **problems(503)},
    "description": "200 when the store answers, else 503 naming it.",
}
METRICS_DOCS: dict[str, Any] = {
    "response_class": Response,
    "responses": {
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    "description": "Prometheus text format, with `query_api_request_seconds` per route.",
}


def create_app(
    settings: QueryApiSettings | None = None,
    client: StoreClient | None = None,
    *,
    authenticator: Authenticator | None = None,
    http: HttpSettings | None = None,
) -> FastAPI:
    settings = settings or load_settings(QueryApiSettings)
    configure_logging("query_api", settings.log_level)
    client = client or store_client(
        settings.mongodb_uri,
        app_name="query-api",
        timeout_ms=settings.mongodb_timeout_ms,
        operation_timeout_ms=settings.mongodb_timeout_ms,
    )
    service = QueryService(
        settings,
        ReadRepository(client, settings.mongodb_database, settings.generation_cache_seconds),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.watcher = ProjectionWatcher(service.repository, settings.position_poll_seconds)
        # built here, in the loop that uses it; it hears what the given client's listeners
        # hear (tests count the store's reads through them)
        service.items = AsyncItemReads(
            async_store_client(
                settings.mongodb_uri,
                max_pool_size=settings.mongodb_read_pool_size,
                app_name="query-api",
                timeout_ms=settings.mongodb_timeout_ms,
                operation_timeout_ms=settings.mongodb_timeout_ms,
                event_listeners=[
                    listener
                    for listener in client.options.event_listeners
                    if isinstance(listener, monitoring.CommandListener)
                ],
            ),
            settings.mongodb_database,
            service.repository,
        )
        try:
            await run_in_threadpool(service.repository.ensure_indexes)
        except StoreUnavailable as exc:
            log.error(
                "store unreachable at start-up; indexes will be ensured on first read",
                extra={"error": str(exc)},
            )
        yield
        await service.watcher.close()
        await service.items.close()
        client.close()

    app = FastAPI(
        title="ActionItems query API",
        version="0.1.0",
        description="Readers' side: ActionItems, their Exceptions node, and command statuses.",
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,  # as the command API: no per-request OpenTelemetry lookups
    )
    install_problem_handlers(app)
    protect(app, "query_api", authenticator=authenticator, http=http)
    install_openapi(app, [])
    app.add_middleware(RequestMetrics, on_complete=observe_request)
    # Every read: a token with the read scope.
    app.include_router(
        read_router(service),
        dependencies=[Depends(require_scope(READ))],
        responses=AUTH_RESPONSES,
    )
    install_ops_routes(
        app,
        service.ready,
        healthz=HEALTHZ_DOCS,
        readyz=merged(READYZ_DOCS, ADMIN),
        metrics=merged(METRICS_DOCS, ADMIN),
    )
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
