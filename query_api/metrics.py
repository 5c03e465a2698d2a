"""Prometheus metrics of the query API: request latency per route template."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY = Histogram(
    "query_api_request_seconds",
    "Request latency per route",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSISTENCY_WAITS = Counter(
    "query_api_consistency_waits_total",
    "Requests with a Consistency-Token, by outcome (already, reached, timeout)",
    ["outcome"],
)
POSITION_POLLS = Counter(
    "query_api_position_polls_total",
    "Reads of the projector's positions (only while some request waits on a token)",
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# FastAPI's own documentation routes do not leave the matched route in the scope.
_DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def route_label(scope: Scope) -> str:
    """The route template ('/action-items/{actionItemId}'), never a raw client path."""
    route = getattr(scope.get("route"), "path", None)
    if route is not None:
        return str(route)
    return str(scope["path"]) if scope["path"] in _DOC_PATHS else "unmatched"


class LatencyMiddleware:
    """Pure ASGI middleware: labels by the matched route's template, never by the raw path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = route_label(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            LATENCY.labels(route, method, str(status)).observe(time.perf_counter() - started)
