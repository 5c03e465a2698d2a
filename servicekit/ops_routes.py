"""What every service answers to operators: /healthz, /readyz, /metrics, and request metrics.

``install_ops_routes`` adds the three routes; each service gives its readiness
check (an async callable that returns the ready body or raises the 503 that
``not_ready`` builds) and, where its published OpenAPI document says more than
the defaults, the documentation of each route. ``RequestMetrics`` is the one
metrics middleware: it times each HTTP request and hands (scope, status,
seconds) to the service's observers, which own the metric names.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.problems import Problem

ReadinessCheck = Callable[[], Awaitable[Any]]
"""Returns the body of a 200 from /readyz, or raises the Problem of a 503."""

Observer = Callable[[Scope, int, float], None]
"""Called with the request's scope, its status, and the seconds since it started."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Route documentation used when a service gives none; `name` also fixes the operationId.
_HEALTHZ: dict[str, Any] = {"name": "healthz", "response_model": dict[str, str]}
_READYZ: dict[str, Any] = {"name": "readyz", "response_model": dict[str, str]}
_METRICS: dict[str, Any] = {"name": "prometheus_metrics", "response_model": None}


def not_ready(
    down: list[str], detail: str, *, retry_after: int | None = None, type_: str | None = None
) -> Problem:
    """The 503 of /readyz: names what is down, and when to ask again if the service knows."""
    return Problem(
        503,
        "Not Ready",
        detail,
        type_=type_ or "about:blank",
        headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
        down=down,
    )


def install_ops_routes(
    app: FastAPI,
    readiness: ReadinessCheck,
    *,
    healthz: Mapping[str, Any] | None = None,
    readyz: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> None:
    """Add GET /healthz, /readyz and /metrics.

    ``healthz``, ``readyz`` and ``metrics`` are keyword arguments for
    ``add_api_route`` (name, summary, description, responses, response_model ...)
    laid over the defaults, so each service keeps the OpenAPI document it publishes.
    """

    async def alive() -> dict[str, str]:
        return {"status": "ok"}

    async def ready() -> Any:
        return await readiness()

    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/healthz", alive, methods=["GET"], **{**_HEALTHZ, **(healthz or {})})
    app.add_api_route("/readyz", ready, methods=["GET"], **{**_READYZ, **(readyz or {})})
    app.add_api_route("/metrics", prometheus, methods=["GET"], **{**_METRICS, **(metrics or {})})


def method_label(scope: Scope, other: str = "OTHER") -> str:
    """The request method, or ``other`` for one outside HTTP_METHODS (bounded label values)."""
    method = str(scope["method"])
    return method if method in HTTP_METHODS else other


class RequestMetrics:
    """Pure ASGI middleware: times every HTTP request for the service's observers.

    ``on_response_start`` runs when the status line goes out (status as sent);
    ``on_complete`` runs once the app returned or raised (status 500 if nothing
    was sent). It sits outside the exception handlers, so answers from any layer
    (routing, validation, body limits, headers) are seen in one place.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_response_start: Observer | None = None,
        on_complete: Observer | None = None,
    ) -> None:
        self.app = app
        self.on_response_start = on_response_start
        self.on_complete = on_complete

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if self.on_response_start is not None:
                    self.on_response_start(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            if self.on_complete is not None:
                self.on_complete(scope, status, time.perf_counter() - started)
