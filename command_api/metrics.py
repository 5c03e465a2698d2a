"""The command API's Prometheus metrics, and what it counts of every HTTP answer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import Scope

from servicekit.ops_routes import method_label

ACCEPTED = Counter(
    "command_api_commands_accepted_total", "Commands acknowledged by the log (202)", ["kind"]
)
REJECTED = Counter(
    "command_api_requests_rejected_total",
    "Requests answered 4xx (refused before the log), by status",
    ["status"],
)
UNAVAILABLE = Counter(
    "command_api_log_unavailable_total",
    "Write requests answered 503 because the log did not acknowledge, by cause",
    ["cause"],
)
REPLAYED = Counter(
    "command_api_retries_from_memory_total",
    "Keyed retries answered from the in-process memory of an earlier attempt (no second copy)",
)
KEY_REGISTRY_UNAVAILABLE = Counter(
    "command_api_key_registry_unavailable_total",
    "Keyed commands accepted without a key verdict: the key registry did not answer within "
    "KEY_REGISTRY_TIMEOUT_MS (fail open; only the projector's per-partition rule applies)",
)
KEY_REUSES = Counter(
    "command_api_key_reuses_total",
    "Keyed commands whose Idempotency-Key another command used first (sent with keyOwner; "
    "the projector rejects them with IDEMPOTENCY_KEY_REUSED)",
)
LATE_ACKS = Counter(
    "command_api_late_acks_total",
    "Commands answered 503 whose record the broker acknowledged afterwards",
)
DELIVERY_SECONDS = Histogram(
    "command_api_delivery_seconds",
    "Time from produce to the broker's acks=all acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RESPONSES = Counter(
    "command_api_http_responses_total", "HTTP answers by method and status", ["method", "status"]
)
REQUEST_SECONDS = Histogram(
    "command_api_http_request_seconds",
    "Time from request start to response start",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "command_api_deliveries_in_flight",
    "Records produced and not yet acknowledged (queued in librdkafka or sent)",
)
PENDING_AFTER_503 = Gauge(
    "command_api_deliveries_pending_after_503",
    "Records whose request was answered 503 and that librdkafka still holds: written when "
    "the log is back (a late ack), or dropped at shutdown",
)


def observe_response(scope: Scope, status: int, seconds: float) -> None:
    """Count an HTTP answer as its status line goes out; every 4xx also into REJECTED."""
    method = method_label(scope)
    RESPONSES.labels(method, str(status)).inc()
    REQUEST_SECONDS.labels(method).observe(seconds)
    if 400 <= status < 500:
        REJECTED.labels(str(status)).inc()
