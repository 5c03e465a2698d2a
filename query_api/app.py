"""The query API's HTTP entry points: translate requests, delegate to the repository."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import MongoClient

from domain.commands import Priority, Status
from query_api.conditional import etag, none_match_hits
from query_api.consistency import ProjectionWatcher
from query_api.cursor import BadCursor, Cursor, filters_digest
from query_api.listing import DEFAULT_LIMIT, MAX_LIMIT, ListQuery, parameter_errors
from query_api.metrics import LatencyMiddleware
from query_api.models import ActionItem, ActionItemPage, CommandStatus, Health, Ready
from query_api.repository import ReadRepository, StoreUnavailable
from query_api.settings import QueryApiSettings
from servicekit.consistency import BadToken, ConsistencyToken
from servicekit.logs import configure_logging
from servicekit.openapi import install_openapi, problem_responses
from servicekit.problems import Problem, install_problem_handlers, validation_problem
from servicekit.settings import load_settings
from servicekit.store_types import StoreClient

log = logging.getLogger("query_api")
T = TypeVar("T")

TokenHeader = Annotated[
    str | None,
    Header(
        alias="Consistency-Token",
        description="The consistencyToken of a 202: wait (bounded) until that command is "
        "processed before answering; 503 with Retry-After past the bound.",
    ),
]
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
ETAG = {"ETag": {"description": 'the item\'s version, quoted: "3"', "schema": {"type": "string"}}}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*statuses)
    if 503 in responses:
        responses[503]["headers"] = RETRY_AFTER
    return responses


def _ok(model: type, headers: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "OK", **({"headers": headers} if headers else {})}}


class QueryService:
    """What the handlers share: the repository, the position watcher and the bounds."""

    def __init__(self, settings: QueryApiSettings, repository: ReadRepository) -> None:
        self.settings = settings
        self.repository = repository
        self.watcher: ProjectionWatcher | None = None

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await run_in_threadpool(fn, *args)
        except StoreUnavailable as exc:
            raise Problem(
                503,
                "Service Unavailable",
                f"the read model store is unreachable ({exc}); nothing was read, retry later",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            ) from None

    async def wait_for(self, token_text: str | None) -> None:
        """Return once the token's command is processed; 400 if malformed, 503 past the bound."""
        if token_text is None:
            return
        try:
            token = ConsistencyToken.decode(token_text)
        except BadToken:
            raise Problem(
                400,
                "Bad Request",
                "Consistency-Token is malformed; send the consistencyToken of a 202 unchanged",
                errors=[{"field": "Consistency-Token", "message": "malformed"}],
            ) from None
        assert self.watcher is not None, "the watcher starts with the app"
        bound = self.settings.consistency_wait_seconds
        if not await self.watcher.wait_for(token, bound):
            raise Problem(
                503,
                "Service Unavailable",
                f"command {token.command_id} is not processed yet (waited {bound:g} s); "
                "retry later with the same Consistency-Token",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
                commandId=token.command_id,
            )


def create_app(
    settings: QueryApiSettings | None = None, client: StoreClient | None = None
) -> FastAPI:
    settings = settings or load_settings(QueryApiSettings)
    configure_logging("query_api", settings.log_level)
    client = client or MongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        timeoutMS=settings.mongodb_timeout_ms,
    )
    service = QueryService(
        settings,
        ReadRepository(client, settings.mongodb_database, settings.generation_cache_seconds),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.watcher = ProjectionWatcher(service.repository, settings.position_poll_seconds)
        try:
            await run_in_threadpool(service.repository.ensure_indexes)
        except StoreUnavailable as exc:
            log.error(
                "store unreachable at start-up; indexes will be ensured on first read",
                extra={"error": str(exc)},
            )
        yield
        await service.watcher.close()
        client.close()

    app = FastAPI(
        title="ActionItems query API",
        version="0.1.0",
        description="Readers' side: ActionItems, their Exceptions node, and command statuses.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    install_openapi(app, [])
    app.add_middleware(LatencyMiddleware)
    _item_routes(app, service)
    _list_route(app, service)
    _operator_routes(app, service)
    return app


def _item_routes(app: FastAPI, service: QueryService) -> None:
    @app.get(
        "/action-items/{actionItemId}",
        response_class=JSONResponse,
        responses={
            **_ok(ActionItem, ETAG),
            304: {
                "description": "Not Modified: If-None-Match names the current version",
                "headers": ETAG,
            },
            **_problems(400, 404, 422, 503),
        },
    )
    async def get_action_item(
        actionItemId: Annotated[uuid.UUID, Path()],
        consistency_token: TokenHeader = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        """One ActionItem with its Exceptions node; `ETag` is its version."""
        await service.wait_for(consistency_token)
        item = await service.read(service.repository.get_item, str(actionItemId))
        if item is None:
            raise Problem(404, "Not Found", f"no ActionItem {actionItemId}")
        tag = etag(item["version"])
        if none_match_hits(if_none_match, tag):
            return Response(status_code=304, headers={"ETag": tag})
        return JSONResponse(item, headers={"ETag": tag})

    @app.get(
        "/commands/{commandId}",
        response_class=JSONResponse,
        responses={**_ok(CommandStatus), **_problems(400, 404, 422, 503)},
    )
    async def get_command(
        commandId: Annotated[uuid.UUID, Path()], consistency_token: TokenHeader = None
    ) -> Response:
        """How a command ended: applied, or rejected with its exception. 404 until processed."""
        await service.wait_for(consistency_token)
        found = await service.read(service.repository.get_status, str(commandId))
        if found is None:
            raise Problem(
                404, "Not Found", f"command {commandId} is not processed yet (or does not exist)"
            )
        return JSONResponse(found)


def _list_route(app: FastAPI, service: QueryService) -> None:
    @app.get(
        "/action-items",
        response_class=JSONResponse,
        responses={**_ok(ActionItemPage), **_problems(400, 422, 503)},
    )
    async def list_action_items(
        request: Request,
        status: Status | None = None,
        assignee: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        priority: Priority | None = None,
        tag: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            Query(description="nextCursor of the previous page (opaque); 400 if malformed"),
        ] = None,
        consistency_token: TokenHeader = None,
    ) -> Response:
        """ActionItems in (createdAt, id) order, filtered by exact match; keyset pagination."""
        errors = parameter_errors(request.query_params.multi_items())
        if errors:
            raise validation_problem(errors)
        filters = {
            name: str(value)
            for name, value in (
                ("status", status),
                ("assignee", assignee),
                ("priority", priority),
                ("tag", tag),
            )
            if value is not None
        }
        after = _decode_cursor(cursor, filters)
        await service.wait_for(consistency_token)
        page = await service.read(service.repository.list_items, ListQuery(filters, limit, after))
        next_cursor = None
        if page.last is not None:
            next_cursor = Cursor(*page.last, filters_digest(filters)).encode()
        return JSONResponse({"items": page.items, "nextCursor": next_cursor})


def _decode_cursor(text: str | None, filters: dict[str, str]) -> Cursor | None:
    if text is None:
        return None
    try:
        cursor = Cursor.decode(text)
        cursor.check_filters(filters)
    except BadCursor as exc:
        raise Problem(
            400,
            "Bad Request",
            f"{exc}; pass nextCursor from a previous page with the same filters",
            errors=[{"field": "cursor", "message": str(exc)}],
        ) from None
    return cursor


def _operator_routes(app: FastAPI, service: QueryService) -> None:
    @app.get("/healthz", response_model=None, responses=_ok(Health))
    async def healthz() -> dict[str, str]:
        """200 while the process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=None, responses={**_ok(Ready), **_problems(503)})
    async def readyz() -> dict[str, str]:
        """200 when the store answers, else 503 naming it."""
        try:
            await run_in_threadpool(service.repository.ping)
        except StoreUnavailable as exc:
            raise Problem(
                503, "Not Ready", f"store: {exc}", headers={"Retry-After": "5"}, down=["store"]
            ) from None
        return {"status": "ready"}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics() -> Response:
        """Prometheus text format, with `query_api_request_seconds` per route."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def __getattr__(name: str) -> Any:
    if name == "app":
        return create_app()
    raise AttributeError(name)
