"""Delivered once or five times: the real loop on the real broker and store gives one read model.

Each further delivery is a new consumer group reading the whole topic again
(what a lost commit, a reset offset or a second deployment amounts to), with
batches cut differently every time. The documents, internal fields included,
must not change by a single byte, and no command may count as applied twice.
"""

from __future__ import annotations

from projector import metrics
from servicekit.store_types import StoreClient
from tests.conftest import Stack
from tests.support.projector_log import CommandMix, high_watermarks, produce_commands, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import (
    projector_in_thread,
    projector_settings,
    wait_committed,
    wait_projected,
)


def applied_total() -> float:
    return metrics.APPLIED._value.get()


def test_delivered_once_or_five_times_gives_the_same_read_model(
    stack: Stack, mongo: StoreClient
) -> None:
    s = stack.settings
    produce_commands(
        s.kafka_bootstrap_servers,
        s.commands_topic,
        s.commands_partitions,
        CommandMix(items=200, seed=17, rejections=0.15, resend=0.05).take(1_500),
    )
    ends = high_watermarks(s.kafka_bootstrap_servers, s.commands_topic, s.commands_partitions)
    db = mongo[s.mongodb_database]
    snapshots = []
    applied = []
    for delivery, batch_size in enumerate((1000, 13, 333, 50, 7)):
        settings = projector_settings(
            stack.env,
            consumer_group=f"{stack.env['CONSUMER_GROUP']}-{delivery}",
            batch_size=batch_size,
        )
        before = applied_total()
        with projector_in_thread(settings) as projector:
            # the first delivery is done when the positions reach the end; a later one (the
            # positions are there already) when its group has committed the whole log
            wait_projected(db, ends, timeout=120)
            wait_committed(
                s.kafka_bootstrap_servers, settings.consumer_group, s.commands_topic, ends, 120
            )
            projector.stop()
        applied.append(applied_total() - before)
        snapshots.append(read_stored(db))
    assert applied[0] > 0 and applied[1:] == [0, 0, 0, 0]
    first = snapshots[0]
    for later in snapshots[1:]:
        assert later.items == first.items
        assert later.statuses == first.statuses
        assert later.positions == first.positions
    expected = fold_log(
        read_log(s.kafka_bootstrap_servers, s.commands_topic, s.commands_partitions)
    )
    assert differences(expected, first) == []
