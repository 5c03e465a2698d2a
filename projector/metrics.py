"""The projector's Prometheus metrics."""

from prometheus_client import Counter, Gauge, Histogram

APPLIED = Counter("projector_commands_applied_total", "Commands applied to the read model")
REJECTED = Counter(
    "projector_commands_rejected_total", "Commands rejected during processing", ["code"]
)
DUPLICATES = Counter(
    "projector_commands_duplicate_total", "Re-sent or redelivered copies skipped without effect"
)
DEAD_LETTERED = Counter(
    "projector_records_dead_lettered_total", "Undecodable records sent to the DLQ"
)
BATCH_SECONDS = Histogram(
    "projector_batch_seconds",
    "Time to apply one batch to the store",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "projector_batch_records", "Records per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
LAG = Gauge(
    "projector_consumer_lag", "Records between the high watermark and the position", ["partition"]
)
STORE_UP = Gauge("projector_store_up", "1 when the last store operation succeeded")
