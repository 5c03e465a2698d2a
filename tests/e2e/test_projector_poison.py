"""A command the store keeps refusing (not an outage): its partition is held, never skipped.

A unique index on ``title`` that the read model does not expect makes the store
refuse one create for real (E11000 on another index than ``_id``). The
projector must apply everything before it, hold that partition at it (paused,
retried with backoff, named by /readyz), keep the other partitions going, and
carry on by itself once an operator removes the cause.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from schemas.partitioning import partition_for
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.conftest import Stack
from tests.support.projector_log import high_watermarks, produce_commands, produce_one, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import (
    base_url,
    committed_offsets,
    metric_values,
    positions,
    projector_process,
    readiness,
    wait_projected,
    wait_until,
)
from tests.unit.builders import create, update


def item_in(partition: int, partitions: int) -> str:
    while True:
        candidate = str(uuid.uuid4())
        if partition_for(candidate, partitions) == partition:
            return candidate


def test_a_refused_command_holds_its_partition_until_the_cause_is_gone(
    stack: Stack, mongo: StoreClient
) -> None:
    s = stack.settings
    n = s.commands_partitions
    db = mongo[s.mongodb_database]
    proc = projector_process(
        stack.env, stack.log_dir, BATCH_SIZE="50", HOLD_RETRY_MAX_SECONDS="1"
    ).start()
    url = base_url(proc)
    try:
        wait_until(lambda: readiness(url)[0] == 200, 30, "the projector to be ready")
        items = active_read_model(db).items
        items.create_index("title", unique=True, name="test_unique_title")

        first, second = item_in(0, n), item_in(0, n)
        produce_commands(
            s.kafka_bootstrap_servers,
            s.commands_topic,
            n,
            [
                create(first, "same title", at=1),
                *[create(item_in(1, n), f"x{i}") for i in range(5)],
            ],
        )
        poisoned = create(second, "same title", at=2)
        held_partition, held_offset = produce_one(
            s.kafka_bootstrap_servers, s.commands_topic, n, poisoned
        )
        later: list[Any] = [update(first, at=3, title="renamed"), update(second, at=4, title="y")]
        later += [create(item_in(p, n), f"later {p}-{i}") for p in range(1, n) for i in range(5)]
        produce_commands(s.kafka_bootstrap_servers, s.commands_topic, n, later)
        ends = high_watermarks(s.kafka_bootstrap_servers, s.commands_topic, n)

        def held() -> str:
            code, body = readiness(url)
            return body if code == 503 and f"partition {held_partition} held" in body else ""

        problem = json.loads(wait_until(held, 30, "/readyz to name the held partition"))
        assert f"at offset {held_offset} (commandId {poisoned.command_id})" in problem["detail"]
        assert "test_unique_title" in problem["detail"]
        # every other partition went on to its end; the held one stopped right before
        wait_until(
            lambda: all(positions(db).get(p, 0) >= ends[p] for p in range(1, n)),
            30,
            "the other partitions to be applied",
        )
        assert positions(db)[held_partition] == held_offset
        group = stack.env["CONSUMER_GROUP"]
        offsets = committed_offsets(s.kafka_bootstrap_servers, group, s.commands_topic, n)
        assert offsets[held_partition] == held_offset
        # its effect is not in the read model (its status may be: statuses are written first,
        # and a Consistency-Token read waits on the positions, which stay before it)
        assert items.find_one({"_id": second}) is None
        assert metric_values(url, "projector_held_partitions")[""] == 1
        failures = metric_values(url, "projector_record_failures_total")[""]
        wait_until(
            lambda: metric_values(url, "projector_record_failures_total")[""] > failures,
            10,
            "a retry of the held command",
        )
        assert poisoned.command_id in proc.log_tail(50_000)

        items.drop_index("test_unique_title")  # the operator removes the cause
        wait_projected(db, ends, timeout=30)
        wait_until(lambda: readiness(url)[0] == 200, 10, "ready again")
        assert metric_values(url, "projector_held_partitions")[""] == 0
        expected = fold_log(read_log(s.kafka_bootstrap_servers, s.commands_topic, n))
        assert differences(expected, read_stored(db)) == []
    finally:
        assert proc.stop() == 0
