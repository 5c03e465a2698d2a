"""The query API's HTTP entry points."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from pymongo import MongoClient

from query_api.consistency import ProjectionWatcher
from query_api.cursor import BadCursor, Cursor
from query_api.repository import ReadRepository, StoreUnavailable
from query_api.settings import QueryApiSettings
from schemas.commands import Priority, Status
from servicekit.consistency import BadToken, ConsistencyToken
from servicekit.logs import configure_logging
from servicekit.openapi import install_openapi, problem_responses
from servicekit.problems import Problem, install_problem_handlers
from servicekit.settings import load_settings

log = logging.getLogger("query_api")
LATENCY = Histogram(
    "query_api_request_seconds",
    "Request latency per route",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TokenHeader = Annotated[str | None, Header(alias="Consistency-Token")]
LIST_PARAMS = {"status", "assignee", "priority", "tag", "limit", "cursor"}


def _store_down(exc: StoreUnavailable) -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        f"the read model store is unreachable ({exc}); retry later",
        headers={"Retry-After": "5"},
    )


def create_app(settings: QueryApiSettings | None = None) -> FastAPI:
    settings = settings or load_settings(QueryApiSettings)
    configure_logging("query_api", settings.log_level)
    client: MongoClient = MongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        uuidRepresentation="standard",
    )
    repository = ReadRepository(
        client, settings.mongodb_database, settings.generation_cache_seconds
    )
    state: dict[str, ProjectionWatcher] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["watcher"] = ProjectionWatcher(repository, settings.position_poll_seconds)
        try:
            await run_in_threadpool(repository.ensure_indexes)
        except StoreUnavailable as exc:
            log.error(
                "store unreachable at start-up; indexes not yet ensured", extra={"error": str(exc)}
            )
        yield
        await state["watcher"].close()
        client.close()

    app = FastAPI(
        title="ActionItems query API",
        version="0.1.0",
        description="Readers' side: ActionItems, their Exceptions node, and command statuses.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    install_openapi(app, [])

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        LATENCY.labels(
            getattr(route, "path", "unmatched"), request.method, str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response

    async def wait_for_token(token_text: str | None) -> None:
        if token_text is None:
            return
        try:
            token = ConsistencyToken.decode(token_text)
        except BadToken:
            raise Problem(
                400,
                "Bad Request",
                "Consistency-Token is malformed",
                errors=[{"field": "Consistency-Token", "message": "malformed"}],
            ) from None
        if not await state["watcher"].wait_for(token, settings.consistency_wait_seconds):
            raise Problem(
                503,
                "Service Unavailable",
                f"command {token.command_id} not yet processed within "
                f"{settings.consistency_wait_seconds:g} s; retry later",
                headers={"Retry-After": str(settings.retry_after_seconds)},
                commandId=token.command_id,
            )

    async def call_store(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except StoreUnavailable as exc:
            raise _store_down(exc) from None

    @app.get("/action-items/{actionItemId}", responses=problem_responses(400, 404, 422, 503))
    async def get_action_item(
        actionItemId: Annotated[uuid.UUID, Path()],
        consistency_token: TokenHeader = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        await wait_for_token(consistency_token)
        item = await call_store(repository.get_item, str(actionItemId))
        if item is None:
            raise Problem(404, "Not Found", f"no ActionItem {actionItemId}")
        etag = f'"{item["version"]}"'
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(item, headers={"ETag": etag})

    @app.get("/action-items", responses=problem_responses(400, 422, 503))
    async def list_action_items(
        request: Request,
        status: Status | None = None,
        assignee: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        priority: Priority | None = None,
        tag: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
        consistency_token: TokenHeader = None,
    ) -> dict[str, Any]:
        unknown = sorted(set(request.query_params) - LIST_PARAMS)
        repeated = sorted(
            k for k in set(request.query_params) if len(request.query_params.getlist(k)) > 1
        )
        if unknown or repeated:
            errors = [{"field": k, "message": "unknown query parameter"} for k in unknown]
            errors += [{"field": k, "message": "given more than once"} for k in repeated]
            raise Problem(422, "Unprocessable Content", "bad query parameters", errors=errors)
        after = None
        if cursor is not None:
            try:
                after = Cursor.decode(cursor)
            except BadCursor:
                raise Problem(
                    400,
                    "Bad Request",
                    "cursor is malformed; use nextCursor from a previous page",
                    errors=[{"field": "cursor", "message": "malformed"}],
                ) from None
        await wait_for_token(consistency_token)
        filters: dict[str, str] = {}
        if status is not None:
            filters["status"] = str(status)
        if assignee is not None:
            filters["assignee"] = assignee
        if priority is not None:
            filters["priority"] = str(priority)
        if tag is not None:
            filters["tags"] = tag
        items, next_cursor = await call_store(repository.list_items, filters, limit, after)
        return {"items": items, "nextCursor": next_cursor.encode() if next_cursor else None}

    @app.get("/commands/{commandId}", responses=problem_responses(400, 404, 422, 503))
    async def get_command(
        commandId: Annotated[uuid.UUID, Path()],
        consistency_token: TokenHeader = None,
    ) -> dict[str, Any]:
        await wait_for_token(consistency_token)
        found = await call_store(repository.get_status, str(commandId))
        if found is None:
            raise Problem(404, "Not Found", f"command {commandId} not processed yet (or unknown)")
        return dict(found)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses=problem_responses(503))
    async def readyz() -> dict[str, str]:
        try:
            await run_in_threadpool(repository.ping)
        except StoreUnavailable as exc:
            raise Problem(503, "Not Ready", f"store: {exc}", down=["store"]) from None
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
