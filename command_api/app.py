"""The command API's FastAPI app: wiring, lifespan, middleware, routes.

The use case is command_api/service.py, the write routes command_api/routes.py.
A middleware goes in with ``app.add_middleware`` next to RequestMetrics below; a
dependency every write needs goes on the router (see command_api/routes.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.telemetry import TelemetryConfig

from command_api import metrics
from command_api.bootstrap import CommandApiParts, bootstrap
from command_api.key_registry import COLLECTION as KEY_REGISTRY_COLLECTION
from command_api.publisher import LogUnavailable
from command_api.requests import CreateActionItemRequest, UpdateActionItemRequest
from command_api.responses import LogUnavailableProblem
from command_api.routes import write_router
from command_api.settings import CommandApiSettings
from servicekit.auth import ADMIN, WRITE, Authenticator, require_scope
from servicekit.hardening import HttpSettings
from servicekit.logs import configure_logging
from servicekit.openapi import install_openapi, problem_responses
from servicekit.ops_routes import RequestMetrics, install_ops_routes, not_ready
from servicekit.problems import install_problem_handlers
from servicekit.protect import (
    AUTH_RESPONSES,
    METRICS_ROUTE,
    RATE_LIMIT_RESPONSES,
    merged,
    protect,
)
from servicekit.ratelimit import RateLimiter, rate_limited
from servicekit.settings import load_settings

log = logging.getLogger("command_api")
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: CommandApiSettings | None = None,
    *,
    authenticator: Authenticator | None = None,
    http: HttpSettings | None = None,
) -> FastAPI:
    settings = settings or load_settings(CommandApiSettings)
    configure_logging("command_api", settings.log_level)
    parts = bootstrap(settings)
    app = FastAPI(
        title="ActionItems command API",
        version="0.2.0",
        description=(
            "Writers' side: a command is answered 202 only after Kafka acknowledged it with "
            "acks=all; bodies are JSON of at most 64 KiB; every error is "
            "application/problem+json. See docs/command-api.md for 503 and retry semantics."
        ),
        lifespan=_lifespan(parts),
        # FastAPI's native OpenTelemetry asked the global tracer provider on every request
        # (about 6% of a write's CPU in the make bench profile); the service's metrics are
        # Prometheus (/metrics), and no tracing is configured.
        telemetry=NO_TELEMETRY,
    )
    install_problem_handlers(app)
    http = protect(app, "command_api", authenticator=authenticator, http=http)
    install_openapi(app, [CreateActionItemRequest, UpdateActionItemRequest, LogUnavailableProblem])
    app.add_middleware(RequestMetrics, on_response_start=metrics.observe_response)
    app.state.publisher = parts.publisher
    # Every write: a token with the write scope, then the caller's rate limit.
    writer = rate_limited(RateLimiter(http.rate_limit_writes), require_scope(WRITE))
    app.include_router(
        write_router(
            parts.service,
            settings.max_body_bytes,
            settings.query_api_base_url,
            settings.retry_after_seconds,
        ),
        dependencies=[Depends(writer)],
        responses={**AUTH_RESPONSES, **RATE_LIMIT_RESPONSES},
    )

    _install_ops_routes(app, parts)
    return app


def _install_ops_routes(app: FastAPI, parts: CommandApiParts) -> None:
    """/healthz (open), /readyz (Kafka answers) and /metrics, the last two for admins."""
    settings = parts.settings

    async def log_ready() -> dict[str, str]:
        try:
            await run_in_threadpool(parts.publisher.check)
        except LogUnavailable as exc:
            raise not_ready(
                ["kafka"],
                f"kafka: {exc.reason}",
                retry_after=settings.retry_after_seconds,
                type_="/problems/not-ready",
            ) from None
        return {"status": "ready"}

    install_ops_routes(
        app,
        log_ready,
        healthz={"summary": "Alive"},
        readyz=merged(
            {"summary": "Ready: Kafka answers", "responses": problem_responses(503)}, ADMIN
        ),
        metrics=merged(METRICS_ROUTE, ADMIN),
    )


def _lifespan(parts: CommandApiParts) -> Any:
    publisher, settings = parts.publisher, parts.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(publisher.start)
        parts.key_registry.start()
        log.info(
            "command API started",
            extra={
                "topic": settings.commands_topic,
                "schemaVersion": parts.codec.writer.version,
                "keyRegistry": f"{settings.mongodb_database}.{KEY_REGISTRY_COLLECTION}",
                "keyRegistryTimeoutMs": settings.key_registry_timeout_ms,
            },
        )
        yield
        # uvicorn gets here after it stopped taking connections and the requests in
        # flight have been answered; what is still queued in librdkafka is flushed now.
        log.info("shutting down: no new commands; flushing outstanding deliveries")
        outstanding = await run_in_threadpool(publisher.close, settings.shutdown_flush_seconds)
        parts.key_registry.close()
        log.info("command API stopped", extra={"outstanding": outstanding})

    return lifespan


_built: list[FastAPI] = []


def __getattr__(name: str) -> Any:
    # `uvicorn command_api.app:app` builds the app on first access, so importing
    # this module (tests, tools) does not read the environment or start a producer.
    # Built once: a second access must not make a second producer.
    if name == "app":
        if not _built:
            _built.append(create_app())
        return _built[0]
    raise AttributeError(name)
