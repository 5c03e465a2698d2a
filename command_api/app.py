"""The command API's HTTP entry points: translate, delegate to the publisher, answer."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from command_api import metrics
from command_api.body import read_json_object
from command_api.commands import build_command, create_payload, update_payload
from command_api.publisher import CommandPublisher, LogUnavailable, producer_config
from command_api.requests import (
    CreateActionItemRequest,
    UpdateActionItemRequest,
    merge_patch_violations,
)
from command_api.settings import CommandApiSettings
from schemas.codec import CommandCodec
from schemas.commands import CommandEnvelope
from schemas.partitioning import partition_for
from servicekit.consistency import ConsistencyToken
from servicekit.logs import configure_logging
from servicekit.openapi import install_openapi, problem_responses, request_body
from servicekit.problems import (
    Problem,
    errors_from_pydantic,
    install_problem_handlers,
    validation_problem,
)
from servicekit.settings import load_settings

log = logging.getLogger("command_api")
JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/merge-patch+json", "application/json")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
_IF_MATCH_RE = re.compile(r'^"(\d{1,18})"$')


class Accepted(BaseModel):
    commandId: str
    actionItemId: str
    status: str = "accepted"
    consistencyToken: str


def _header_token(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not _TOKEN_RE.match(value):
        raise Problem(
            400,
            "Bad Request",
            f"{name} must be 1..255 visible ASCII characters",
            errors=[{"field": name, "message": "1..255 visible ASCII characters"}],
        )
    return value


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    match = _IF_MATCH_RE.match(value.strip())
    if not match:
        raise Problem(
            400,
            "Bad Request",
            'If-Match must be a quoted version, e.g. "3"',
            errors=[{"field": "If-Match", "message": 'expected "<version>"'}],
        )
    return int(match.group(1))


def create_app(settings: CommandApiSettings | None = None) -> FastAPI:
    settings = settings or load_settings(CommandApiSettings)
    configure_logging("command_api", settings.log_level)
    publisher = CommandPublisher(
        producer_config(
            settings.kafka_bootstrap_servers,
            int(settings.delivery_timeout_seconds * 1000),
            settings.producer_linger_ms,
        ),
        settings.commands_topic,
        settings.delivery_timeout_seconds,
    )
    codec = CommandCodec()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        publisher.start()
        log.info("command API started", extra={"topic": settings.commands_topic})
        yield
        log.info("shutting down: no new commands; waiting for outstanding deliveries")
        await run_in_threadpool(publisher.close, settings.shutdown_flush_seconds)
        log.info("command API stopped")

    app = FastAPI(
        title="ActionItems command API",
        version="0.1.0",
        description="Writers' side: commands are made durable on Kafka before 202 Accepted.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    install_openapi(app, [CreateActionItemRequest, UpdateActionItemRequest])
    app.state.publisher = publisher

    async def accept(
        command: CommandEnvelope, kind: str, response: Response, dedupe: bool
    ) -> Accepted:
        value = codec.encode(command)
        headers: list[tuple[str, str | bytes | None]] = [
            ("schema.fingerprint", codec.writer.fingerprint_hex.encode()),
            ("correlation.id", command.correlation_id.encode()),
            ("command.type", kind.encode()),
            ("content-type", b"application/vnd.apache.avro+single-object"),
        ]
        started = time.perf_counter()
        try:
            partitions = publisher.partitions()
            delivered = await publisher.publish(
                command.command_id,
                value,
                partition_for(command.action_item_id, partitions),
                headers,
                dedupe,
            )
        except LogUnavailable as exc:
            metrics.UNAVAILABLE.inc()
            log.error(
                "command not confirmed by the log; answered 503",
                extra={
                    "commandId": command.command_id,
                    "reason": exc.reason,
                    "maybeWritten": exc.maybe_written,
                },
            )
            raise Problem(
                503,
                "Service Unavailable",
                f"the command log did not confirm the command ({exc.reason}); it was not accepted. "
                "Retrying with the same Idempotency-Key is always safe: the command takes effect "
                "at most once, even if the log did take this attempt.",
                type_="/problems/log-unavailable",
                headers={"Retry-After": str(settings.retry_after_seconds)},
                commandId=command.command_id,
                actionItemId=command.action_item_id,
                maybeWritten=exc.maybe_written,
            ) from None
        metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
        metrics.ACCEPTED.labels(kind).inc()
        log.info(
            "command accepted",
            extra={
                "commandId": command.command_id,
                "actionItemId": command.action_item_id,
                "partition": delivered.partition,
                "offset": delivered.offset,
                "correlationId": command.correlation_id,
            },
        )
        response.status_code = 202
        response.headers["Location"] = (
            f"{settings.query_api_base_url.rstrip('/')}/commands/{command.command_id}"
        )
        token = ConsistencyToken(command.command_id, delivered.partition, delivered.offset)
        return Accepted(
            commandId=command.command_id,
            actionItemId=command.action_item_id,
            consistencyToken=token.encode(),
        )

    def validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            metrics.REJECTED.labels("422").inc()
            raise validation_problem(errors_from_pydantic(exc.errors())) from None

    write_responses = {
        202: {"description": "Accepted: the command is durable on the log"},
        **problem_responses(400, 413, 415, 422, 503),
    }

    @app.post(
        "/action-items",
        status_code=202,
        response_model=Accepted,
        responses=write_responses,
        openapi_extra=request_body(CreateActionItemRequest, *JSON_TYPES),
    )
    async def create_action_item(
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
        client_id: Annotated[str | None, Header(alias="X-Client-Id")] = None,
        correlation_id: Annotated[str | None, Header(alias="X-Correlation-Id")] = None,
    ) -> Accepted:
        key = _header_token("Idempotency-Key", idempotency_key)
        caller = _header_token("X-Client-Id", client_id) or "anonymous"
        correlation = _header_token("X-Correlation-Id", correlation_id) or str(uuid.uuid4())
        data = await read_json_object(request, JSON_TYPES, settings.max_body_bytes)
        body: CreateActionItemRequest = validated(CreateActionItemRequest, data)
        command = build_command(
            create_payload(body),
            body.model_dump(mode="json"),
            action_item_id=None,
            caller=caller,
            idempotency_key=key,
            expected_version=None,
            correlation_id=correlation,
        )
        return await accept(command, "create", response, dedupe=key is not None)

    @app.patch(
        "/action-items/{actionItemId}",
        status_code=202,
        response_model=Accepted,
        responses=write_responses,
        openapi_extra=request_body(UpdateActionItemRequest, *PATCH_TYPES),
    )
    async def update_action_item(
        request: Request,
        response: Response,
        actionItemId: Annotated[uuid.UUID, Path()],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
        if_match: Annotated[str | None, Header(alias="If-Match")] = None,
        client_id: Annotated[str | None, Header(alias="X-Client-Id")] = None,
        correlation_id: Annotated[str | None, Header(alias="X-Correlation-Id")] = None,
    ) -> Accepted:
        key = _header_token("Idempotency-Key", idempotency_key)
        caller = _header_token("X-Client-Id", client_id) or "anonymous"
        correlation = _header_token("X-Correlation-Id", correlation_id) or str(uuid.uuid4())
        expected = _if_match(if_match)
        data = await read_json_object(request, PATCH_TYPES, settings.max_body_bytes)
        violations = merge_patch_violations(data)
        if violations:
            metrics.REJECTED.labels("422").inc()
            raise validation_problem(violations)
        body: UpdateActionItemRequest = validated(UpdateActionItemRequest, data)
        command = build_command(
            update_payload(body),
            body.model_dump(mode="json", include=body.model_fields_set),
            action_item_id=str(actionItemId),
            caller=caller,
            idempotency_key=key,
            expected_version=expected,
            correlation_id=correlation,
        )
        return await accept(command, "update", response, dedupe=key is not None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses=problem_responses(503))
    async def readyz() -> dict[str, str]:
        try:
            await run_in_threadpool(publisher.check)
        except LogUnavailable as exc:
            raise Problem(503, "Not Ready", f"kafka: {exc.reason}", down=["kafka"]) from None
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def __getattr__(name: str) -> Any:
    # `uvicorn command_api.app:app` builds the app on first access, so importing
    # this module (tests, tools) does not read the environment or start a producer.
    if name == "app":
        return create_app()
    raise AttributeError(name)
