"""Prometheus metrics of the query API: request latency per route template."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from starlette.types import Scope

from servicekit.ops_routes import method_label

LATENCY = Histogram(
    "query_api_request_seconds",
    "Request latency per route",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSISTENCY_WAITS = Counter(
    "query_api_consistency_waits_total",
    "Requests with a Consistency-Token, by outcome (already, reached, timeout, parked)",
    ["outcome"],
)
POSITION_POLLS = Counter(
    "query_api_position_polls_total",
    "Reads of the projector's positions (only while some request waits on a token)",
)
# FastAPI's own documentation routes do not leave the matched route in the scope.
_DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def route_label(scope: Scope) -> str:
    """The route template ('/action-items/{actionItemId}'), never a raw client path."""
    route = getattr(scope.get("route"), "path", None)
    if route is not None:
        return str(route)
    return str(scope["path"]) if scope["path"] in _DOC_PATHS else "unmatched"


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Time a request once it is answered, by route template, method and status."""
    LATENCY.labels(route_label(scope), method_label(scope, "other"), str(status)).observe(seconds)
