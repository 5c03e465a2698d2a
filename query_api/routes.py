"""The query API's read routes: parse the request, wait on a token if given, read, answer.

``read_router`` returns an APIRouter, so a dependency every read needs
(authentication, a rate limit) goes in one place: ``APIRouter(dependencies=...)``
here, or ``app.include_router(..., dependencies=...)`` in query_api/app.py.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from query_api import history as exception_history
from query_api.conditional import etag, none_match_hits
from query_api.cursor import BadCursor, Cursor, filters_digest
from query_api.history import BadHistoryCursor, ExceptionHistory, HistoryCursor
from query_api.listing import ListFilters, ListQuery, parameter_errors
from query_api.models import ActionItem, ActionItemPage, CommandStatus, ExceptionPage
from query_api.service import QueryService
from servicekit.openapi import problem_responses
from servicekit.problems import Problem, validation_problem

# The opaque tokens are URL-safe base64 without padding (servicekit/tokens.py). The pattern is
# published for clients; the routes check it themselves, so a bad one is a 400 naming it.
OPAQUE_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"
TokenHeader = Annotated[
    str | None,
    Header(
        alias="Consistency-Token",
        description="The consistencyToken of a 202, unchanged: wait (bounded) until that command "
        "is processed before answering; 503 with Retry-After past the bound. Any other value, "
        "even one of the right form, is a 400.",
        json_schema_extra={"pattern": OPAQUE_TOKEN_PATTERN},
    ),
]
CURSOR_DOC = (
    "nextCursor of the previous page, unchanged (opaque); any other value, even one of the "
    "right form, is a 400"
)
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
ETAG = {"ETag": {"description": 'the item\'s version, quoted: "3"', "schema": {"type": "string"}}}
PAGE_ETAG = {"ETag": {"description": "a tag of this page's content", "schema": {"type": "string"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Problem answers as documented; a 503 also documents Retry-After."""
    responses = problem_responses(*statuses)
    if 503 in responses:
        responses[503]["headers"] = RETRY_AFTER
    return responses


def ok(model: type, headers: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "OK", **({"headers": headers} if headers else {})}}


def read_router(service: QueryService) -> APIRouter:
    """GET /action-items/{actionItemId}, .../exceptions, /commands/{commandId}, /action-items."""
    router = APIRouter()
    _item_routes(router, service)
    _history_route(router, service, ExceptionHistory(service.repository))
    _list_route(router, service)
    return router


def _item_routes(router: APIRouter, service: QueryService) -> None:
    @router.get(
        "/action-items/{actionItemId}",
        response_class=JSONResponse,
        responses={
            **ok(ActionItem, ETAG),
            304: {
                "description": "Not Modified: If-None-Match names the current version",
                "headers": ETAG,
            },
            **problems(400, 404, 422, 503),
        },
    )
    async def get_action_item(
        actionItemId: Annotated[uuid.UUID, Path()],
        consistency_token: TokenHeader = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        """One ActionItem with its Exceptions node; `ETag` is its version."""
        await service.wait_for(consistency_token, str(actionItemId))
        item = await service.read_item(str(actionItemId))
        if item is None:
            raise Problem(404, "Not Found", f"no ActionItem {actionItemId}")
        tag = etag(item["version"])
        if none_match_hits(if_none_match, tag):
            return Response(status_code=304, headers={"ETag": tag})
        return JSONResponse(item, headers={"ETag": tag})

    @router.get(
        "/commands/{commandId}",
        response_class=JSONResponse,
        responses={**ok(CommandStatus), **problems(400, 404, 422, 503)},
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
        if found.parked:
            # decided, not applied: the store refused its item's write (projector/parking.py)
            raise Problem(
                404,
                "Not Found",
                f"command {commandId} is not processed yet: the store refused a write of its "
                "ActionItem, so it waits, in order, until the projector can apply it",
            )
        return JSONResponse(found.body)


def _history_route(router: APIRouter, service: QueryService, history: ExceptionHistory) -> None:
    @router.get(
        "/action-items/{actionItemId}/exceptions",
        response_class=JSONResponse,
        responses={
            **ok(ExceptionPage, PAGE_ETAG),
            304: {
                "description": "Not Modified: If-None-Match names this page's current tag",
                "headers": PAGE_ETAG,
            },
            **problems(400, 404, 422, 503),
        },
    )
    async def get_exceptions(
        actionItemId: Annotated[uuid.UUID, Path()],
        limit: Annotated[
            int, Query(ge=1, le=exception_history.MAX_LIMIT)
        ] = exception_history.DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            Query(description=CURSOR_DOC, json_schema_extra={"pattern": OPAQUE_TOKEN_PATTERN}),
        ] = None,
        consistency_token: TokenHeader = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        """The ActionItem's whole Exceptions history, oldest first (log order), keyset-paged.

        Entries recorded while a client pages come after the ones it has seen, so
        paging never skips or repeats one. 404 for an unknown item.
        """
        item_id = str(actionItemId)
        after = 0
        if cursor is not None:
            try:
                after = HistoryCursor.decode(cursor, item_id).after
            except BadHistoryCursor as exc:
                raise Problem(
                    400,
                    "Bad Request",
                    f"{exc}; pass nextCursor from a previous page of this item's exceptions",
                    errors=[{"field": "cursor", "message": str(exc)}],
                ) from None
        await service.wait_for(consistency_token, item_id)
        page = await service.read(history.page, item_id, after, limit)
        if page is None:
            raise Problem(404, "Not Found", f"no ActionItem {actionItemId}")
        tag = page.etag(item_id)
        if none_match_hits(if_none_match, tag):
            return Response(status_code=304, headers={"ETag": tag})
        return JSONResponse(page.body(item_id), headers={"ETag": tag})


class ListParams(ListFilters):
    """Every query parameter of GET /action-items: the filters and limit, then the cursor."""

    cursor: Annotated[
        str | None,
        Field(description=CURSOR_DOC, json_schema_extra={"pattern": OPAQUE_TOKEN_PATTERN}),
    ] = None


def _list_route(router: APIRouter, service: QueryService) -> None:
    @router.get(
        "/action-items",
        response_class=JSONResponse,
        responses={**ok(ActionItemPage), **problems(400, 422, 503)},
    )
    async def list_action_items(
        request: Request,
        params: Annotated[ListParams, Query()],
        consistency_token: TokenHeader = None,
    ) -> Response:
        """ActionItems in (createdAt, id) order, filtered by exact match; keyset pagination."""
        errors = parameter_errors(request.query_params.multi_items())
        if errors:
            raise validation_problem(errors)
        filters = params.filters()
        after = _decode_cursor(params.cursor, filters)
        await service.wait_for(consistency_token)
        page = await service.read(
            service.repository.list_items, ListQuery(filters, params.limit, after)
        )
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
