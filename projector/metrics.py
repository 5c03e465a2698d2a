"""The projector's Prometheus metrics."""

from prometheus_client import Counter, Gauge, Histogram

APPLIED = Counter("projector_commands_applied_total", "Commands applied to the read model")
REJECTED = Counter(
    "projector_commands_rejected_total", "Commands rejected during processing", ["code"]
)
SKIPPED = Counter(
    "projector_commands_skipped_total",
    "Records with no second effect: a re-sent copy of a command, or a redelivered record "
    "whose effect (already_applied) or status (status_stored) was already in the store",
    ["reason"],
)
DEAD_LETTERED = Counter(
    "projector_records_dead_lettered_total", "Undecodable records sent to the DLQ"
)
BATCH_SECONDS = Histogram(
    "projector_batch_seconds",
    "Time from a batch leaving the consumer to its offsets being committed",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "projector_batch_records", "Records per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
LAG = Gauge(
    "projector_consumer_lag",
    "Records between the partition's high watermark and the committed offset",
    ["partition"],
)
STORE_UP = Gauge("projector_store_up", "1 when the last store operation succeeded")
STORE_RETRIES = Counter(
    "projector_store_retries_total", "Batches held and retried because the store was unreachable"
)
RECORD_FAILURES = Counter(
    "projector_record_failures_total",
    "Store failures for a reason other than an outage (the record's partition is held)",
)
HELD_PARTITIONS = Gauge(
    "projector_held_partitions", "Partitions held at a record the store keeps refusing"
)
DLQ_FAILURES = Counter(
    "projector_dead_letter_failures_total", "Attempts to write to the dead-letter topic that failed"
)
COMMIT_FAILURES = Counter(
    "projector_commit_failures_total",
    "Offset commits that failed (the records are redelivered and skipped by the guards)",
)
PARKED_ITEMS = Gauge(
    "projector_parked_items",
    "Items whose writes the store refuses: their commands wait in the store, in order",
)
PARKED_ITEM = Gauge(
    "projector_parked_item",
    "1 for each parked item (by item id and partition); see /readyz for the reason",
    ["item", "partition"],
)
PARKED_COMMANDS = Counter(
    "projector_parked_commands_total", "Records parked behind a refused item's write"
)
