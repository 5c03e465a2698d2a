"""The command API's HTTP entry points: translate, delegate to the publisher, answer."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from command_api import metrics
from command_api.body import read_json_object
from command_api.headers import WriteHeaders, header_parameters, write_headers
from command_api.payloads import create_payload, update_payload
from command_api.publisher import CommandPublisher, LogUnavailable, producer_config
from command_api.requests import (
    CreateActionItemRequest,
    UpdateActionItemRequest,
    merge_patch_violations,
)
from command_api.responses import Accepted, LogUnavailableProblem, write_responses
from command_api.settings import CommandApiSettings
from domain.commands import CommandEnvelope
from domain.identity import build_command
from schemas.codec import CommandCodec
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
WRITE_HEADERS = ("Idempotency-Key", "X-Client-Id", "X-Correlation-Id")

Draft = Callable[[], CommandEnvelope]


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**e, "message": e["message"].removeprefix("Value error, ")}
            for e in errors_from_pydantic(exc.errors())
        ]
        raise validation_problem(errors) from None


def _unconfirmed(
    exc: LogUnavailable, command: CommandEnvelope, keyed: bool, retry_after: int
) -> Problem:
    retry = (
        "Retrying with the same Idempotency-Key is always safe: the command takes effect at "
        "most once, even if the log did take this attempt."
        if keyed
        else "Send an Idempotency-Key to make a retry safe: without one a retry is a new "
        "command, and if the log did take this attempt (maybeWritten) both would apply."
    )
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


def create_app(settings: CommandApiSettings | None = None) -> FastAPI:
    settings = settings or load_settings(CommandApiSettings)
    configure_logging("command_api", settings.log_level)
    publisher = CommandPublisher(
        producer_config(
            settings.kafka_bootstrap_servers,
            int((settings.delivery_timeout_seconds + settings.late_ack_grace_seconds) * 1000),
            settings.producer_linger_ms,
        ),
        settings.commands_topic,
        settings.delivery_timeout_seconds,
    )
    codec = CommandCodec()
    fingerprint = codec.writer.fingerprint_hex.encode()
    status_base = settings.query_api_base_url.rstrip("/")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(publisher.start)
        log.info(
            "command API started",
            extra={"topic": settings.commands_topic, "schemaVersion": codec.writer.version},
        )
        yield
        # uvicorn gets here after it stopped taking connections and the requests in
        # flight have been answered; what is still queued in librdkafka is flushed now.
        log.info("shutting down: no new commands; flushing outstanding deliveries")
        outstanding = await run_in_threadpool(publisher.close, settings.shutdown_flush_seconds)
        log.info("command API stopped", extra={"outstanding": outstanding})

    app = FastAPI(
        title="ActionItems command API",
        version="0.2.0",
        description=(
            "Writers' side: a command is answered 202 only after Kafka acknowledged it with "
            "acks=all; bodies are JSON of at most 64 KiB; every error is "
            "application/problem+json. See docs/command-api.md for 503 and retry semantics."
        ),
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    install_openapi(app, [CreateActionItemRequest, UpdateActionItemRequest, LogUnavailableProblem])
    app.add_middleware(metrics.ResponseMetrics)
    app.state.publisher = publisher

    async def accept(draft: Draft, response: Response, dedupe: bool) -> Accepted:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.delivery_timeout_seconds
        command = draft()
        try:
            partitions = publisher.partition_count
            if partitions is None:
                partitions = await publisher.load_partition_count(deadline)
                # stamp acceptance after the wait: per partition, log order = acceptedAt order
                command = draft()
            headers: list[tuple[str, str | bytes | None]] = [
                ("schema.fingerprint", fingerprint),
                ("correlation.id", command.correlation_id.encode()),
                ("command.type", command.kind.encode()),
                ("content-type", b"application/vnd.apache.avro+single-object"),
            ]
            started = loop.time()
            delivered = await publisher.publish(
                command.command_id,
                codec.encode(command),
                partition_for(command.action_item_id, partitions),
                headers,
                dedupe,
                deadline,
            )
        except LogUnavailable as exc:
            metrics.UNAVAILABLE.labels(exc.cause).inc()
            log.error(
                "command not confirmed by the log; answered 503",
                extra={
                    "commandId": command.command_id,
                    "reason": exc.reason,
                    "maybeWritten": exc.maybe_written,
                    "correlationId": command.correlation_id,
                    "waitedSeconds": round(
                        loop.time() - deadline + settings.delivery_timeout_seconds, 3
                    ),
                },
            )
            raise _unconfirmed(exc, command, dedupe, settings.retry_after_seconds) from None
        if delivered.replayed:
            metrics.REPLAYED.inc()
        else:
            metrics.DELIVERY_SECONDS.observe(loop.time() - started)
        metrics.ACCEPTED.labels(command.kind).inc()
        log.info(
            "command accepted",
            extra={
                "commandId": command.command_id,
                "actionItemId": command.action_item_id,
                "partition": delivered.partition,
                "offset": delivered.offset,
                "replayed": delivered.replayed,
                "correlationId": command.correlation_id,
            },
        )
        response.status_code = 202
        response.headers["Location"] = f"{status_base}/commands/{command.command_id}"
        response.headers["X-Correlation-Id"] = command.correlation_id
        token = ConsistencyToken(command.command_id, delivered.partition, delivered.offset)
        return Accepted(
            commandId=command.command_id,
            actionItemId=command.action_item_id,
            consistencyToken=token.encode(),
        )

    def draft_of(payload: Any, body: dict[str, Any], item: str | None, hdrs: WriteHeaders) -> Draft:
        return partial(
            build_command,
            payload,
            body,
            action_item_id=item,
            caller=hdrs.caller,
            idempotency_key=hdrs.idempotency_key,
            expected_version=hdrs.expected_version,
            correlation_id=hdrs.correlation_id,
        )

    @app.post(
        "/action-items",
        status_code=202,
        response_model=Accepted,
        responses=write_responses(),
        summary="Create an ActionItem",
        openapi_extra={
            **request_body(CreateActionItemRequest, *JSON_TYPES),
            "parameters": header_parameters(*WRITE_HEADERS),
        },
    )
    async def create_action_item(request: Request, response: Response) -> Accepted:
        hdrs = write_headers(request.headers, conditional=False)
        data = await read_json_object(request, JSON_TYPES, settings.max_body_bytes)
        body: CreateActionItemRequest = _validated(CreateActionItemRequest, data)
        draft = draft_of(create_payload(body), body.model_dump(mode="json"), None, hdrs)
        return await accept(draft, response, dedupe=hdrs.idempotency_key is not None)

    @app.patch(
        "/action-items/{actionItemId}",
        status_code=202,
        response_model=Accepted,
        responses=write_responses(),
        summary="Update an ActionItem with a JSON merge patch",
        openapi_extra={
            **request_body(UpdateActionItemRequest, *PATCH_TYPES),
            "parameters": header_parameters(*WRITE_HEADERS, "If-Match"),
        },
    )
    async def update_action_item(
        request: Request,
        response: Response,
        actionItemId: Annotated[uuid.UUID, Path(description="The ActionItem's id (a UUID)")],
    ) -> Accepted:
        hdrs = write_headers(request.headers, conditional=True)
        data = await read_json_object(request, PATCH_TYPES, settings.max_body_bytes)
        violations = merge_patch_violations(data)
        if violations:
            raise validation_problem(violations)
        body: UpdateActionItemRequest = _validated(UpdateActionItemRequest, data)
        changed = body.model_dump(mode="json", include=body.model_fields_set)
        draft = draft_of(update_payload(body), changed, str(actionItemId), hdrs)
        return await accept(draft, response, dedupe=hdrs.idempotency_key is not None)

    @app.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Ready: Kafka answers", responses=problem_responses(503))
    async def readyz() -> dict[str, str]:
        try:
            await run_in_threadpool(publisher.check)
        except LogUnavailable as exc:
            raise Problem(
                503,
                "Not Ready",
                f"kafka: {exc.reason}",
                type_="/problems/not-ready",
                headers={"Retry-After": str(settings.retry_after_seconds)},
                down=["kafka"],
            ) from None
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


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
