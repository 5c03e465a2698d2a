"""The command API's Prometheus metrics."""

from prometheus_client import Counter, Histogram

ACCEPTED = Counter(
    "command_api_commands_accepted_total", "Commands acknowledged by the log", ["kind"]
)
REJECTED = Counter(
    "command_api_requests_rejected_total", "Requests refused before the log (4xx)", ["status"]
)
UNAVAILABLE = Counter(
    "command_api_log_unavailable_total", "Requests answered 503 because the log did not acknowledge"
)
DELIVERY_SECONDS = Histogram(
    "command_api_delivery_seconds",
    "Time from produce to the broker's acks=all acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
