"""The command API's write routes: read headers and body, validate, call the service, answer.

``write_router`` returns an APIRouter, so a dependency that every write needs
(authentication, a rate limit) goes in one place: ``APIRouter(dependencies=...)``
here, or ``app.include_router(..., dependencies=...)`` in command_api/app.py.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from command_api.body import read_json_object
from command_api.headers import WriteHeaders, header_parameters, write_headers
from command_api.payloads import create_payload, update_payload
from command_api.requests import (
    CreateActionItemRequest,
    UpdateActionItemRequest,
    merge_patch_violations,
)
from command_api.responses import Accepted, write_responses
from command_api.service import Acceptance, CommandService, Draft, NotConfirmed
from domain.identity import build_command
from servicekit.auth import caller_of
from servicekit.openapi import request_body
from servicekit.problems import Problem, errors_from_pydantic, validation_problem

JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/merge-patch+json", "application/json")
WRITE_HEADERS = ("Idempotency-Key", "X-Client-Id", "X-Correlation-Id")
# The bodies are read by hand (read_json_object), so the OpenAPI document names them here.
CREATE_OPENAPI = {
    **request_body(CreateActionItemRequest, *JSON_TYPES),
    "parameters": header_parameters(*WRITE_HEADERS),
}
UPDATE_OPENAPI = {
    **request_body(UpdateActionItemRequest, *PATCH_TYPES),
    "parameters": header_parameters(*WRITE_HEADERS, "If-Match"),
}


def write_router(
    service: CommandService, max_body_bytes: int, status_base: str, retry_after: int
) -> APIRouter:
    """POST /action-items and PATCH /action-items/{actionItemId}."""
    router = APIRouter()
    status_base = status_base.rstrip("/")

    async def accept(draft: Draft, hdrs: WriteHeaders) -> Response:
        keyed = hdrs.idempotency_key is not None
        try:
            accepted = await service.accept(draft, dedupe=keyed)
        except NotConfirmed as exc:
            raise unconfirmed_problem(exc, keyed, retry_after) from None
        return accepted_answer(accepted, status_base)

    @router.post(
        "/action-items",
        status_code=202,
        response_model=Accepted,
        responses=write_responses(),
        summary="Create an ActionItem",
        openapi_extra=CREATE_OPENAPI,
    )
    async def create_action_item(request: Request) -> Response:
        hdrs = write_headers(request.headers, conditional=False)
        data = await read_json_object(request, JSON_TYPES, max_body_bytes)
        body: CreateActionItemRequest = validated(CreateActionItemRequest, data)
        caller = caller_of(request).sub
        draft = draft_of(create_payload(body), None, hdrs, caller)
        return await accept(draft, hdrs)

    @router.patch(
        "/action-items/{actionItemId}",
        status_code=202,
        response_model=Accepted,
        responses=write_responses(),
        summary="Update an ActionItem with a JSON merge patch",
        openapi_extra=UPDATE_OPENAPI,
    )
    async def update_action_item(
        request: Request,
        actionItemId: Annotated[uuid.UUID, Path(description="The ActionItem's id (a UUID)")],
    ) -> Response:
        hdrs = write_headers(request.headers, conditional=True)
        data = await read_json_object(request, PATCH_TYPES, max_body_bytes)
        violations = merge_patch_violations(data)
        if violations:
            raise validation_problem(violations)
        body: UpdateActionItemRequest = validated(UpdateActionItemRequest, data)
        caller = caller_of(request).sub
        draft = draft_of(update_payload(body), str(actionItemId), hdrs, caller)
        return await accept(draft, hdrs)

    return router


def validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``data`` as ``model``, or the 422 naming every field that breaks a rule."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**e, "message": e["message"].removeprefix("Value error, ")}
            for e in errors_from_pydantic(exc.errors())
        ]
        raise validation_problem(errors) from None


def draft_of(payload: Any, item: str | None, hdrs: WriteHeaders, caller: str) -> Draft:
    """The command's builder; ``caller`` is the token's sub, which scopes the Idempotency-Key."""
    return partial(
        build_command,
        payload,
        action_item_id=item,
        caller=caller,
        client_id=hdrs.client_id,
        idempotency_key=hdrs.idempotency_key,
        expected_version=hdrs.expected_version,
        correlation_id=hdrs.correlation_id,
    )


def accepted_answer(accepted: Acceptance, status_base: str) -> Response:
    """The 202: Location of the command's status, its correlation id, the consistency token.

    Built here as the response itself: FastAPI then skips validating and serialising
    a response model per request (``Accepted`` still documents it in OpenAPI).
    """
    command = accepted.command
    return JSONResponse(
        {
            "commandId": command.command_id,
            "actionItemId": command.action_item_id,
            "status": "accepted",
            "consistencyToken": accepted.consistency_token,
        },
        status_code=202,
        headers={
            "Location": f"{status_base}/commands/{command.command_id}",
            "X-Correlation-Id": command.correlation_id,
        },
    )


def unconfirmed_problem(exc: NotConfirmed, keyed: bool, retry_after: int) -> Problem:
    """The 503 of a command the log did not confirm, with what a retry does."""
    retry = (
        "Retrying with the same Idempotency-Key is always safe: the command takes effect at "
        "most once, even if the log did take this attempt."
        if keyed
        else "Send an Idempotency-Key to make a retry safe: without one a retry is a new "
        "command, and if the log did take this attempt (maybeWritten) both would apply."
    )
    command = exc.command
    return Problem(
        503,
        "Service Unavailable",
        f"the command log did not confirm the command ({exc.reason}). " + retry,
        type_="/problems/log-unavailable",
        headers={"Retry-After": str(retry_after), "X-Correlation-Id": command.correlation_id},
        commandId=command.command_id,
        actionItemId=command.action_item_id,
        maybeWritten=exc.maybe_written,
    )
