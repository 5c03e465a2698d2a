"""Records that cannot be decoded go to the dead-letter topic; the commands after them apply."""

from __future__ import annotations

import httpx

from schemas.codec import MAGIC, CommandCodec
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem
from tests.support.auth import caller_headers
from tests.support.projector_log import produce_raw, read_log, read_topic_messages
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import metric_values, readiness
from tests.unit.builders import create


def test_garbage_lands_in_the_dlq_with_reason_and_position_and_later_commands_apply(
    system: RunningSystem, mongo: StoreClient
) -> None:
    settings = system.stack.settings
    commands = httpx.Client(
        headers=caller_headers("anonymous"), base_url=system.command_url, timeout=10
    )
    first = commands.post("/action-items", json={"title": "before"}).json()
    valid = CommandCodec().encode(create())
    garbage = [
        (b"k-text", b"this is not avro"),
        (b"k-tombstone", None),
        (b"k-fingerprint", MAGIC + b"\x00" * 8 + valid[10:]),
        (b"k-truncated", valid[:14]),
    ]
    for i, (key, value) in enumerate(garbage):
        produce_raw(
            settings.kafka_bootstrap_servers,
            settings.commands_topic,
            i % settings.commands_partitions,
            value,
            key=key,
        )
    after = [commands.post("/action-items", json={"title": f"after {i}"}).json() for i in range(6)]

    queries = httpx.Client(
        headers=caller_headers("anonymous"), base_url=system.query_url, timeout=10
    )
    for accepted in [first, *after]:
        read = queries.get(
            f"/action-items/{accepted['actionItemId']}",
            headers={"Consistency-Token": accepted["consistencyToken"]},
        )
        assert read.status_code == 200, read.text

    dead = read_topic_messages(
        settings.kafka_bootstrap_servers, settings.dlq_topic, settings.commands_partitions, 4
    )
    by_key = {key: (value, headers) for key, value, headers in dead}
    assert set(by_key) == {key for key, _ in garbage}
    log = {
        r.key: r
        for r in read_log(
            settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
        )
    }
    reasons = {}
    for key, value in garbage:
        dlq_value, headers = by_key[key]
        assert dlq_value == value
        source = log[key]
        assert headers["dlq.source.topic"] == settings.commands_topic.encode()
        assert headers["dlq.source.partition"] == str(source.partition).encode()
        assert headers["dlq.source.offset"] == str(source.offset).encode()
        assert int(headers["dlq.source.timestamp"]) > 0
        reasons[key] = headers["dlq.reason"].decode()
    assert "missing C3 01 marker" in reasons[b"k-text"]
    assert "tombstone" in reasons[b"k-tombstone"]
    assert "unknown writer schema fingerprint" in reasons[b"k-fingerprint"]
    assert "corrupt Avro datum" in reasons[b"k-truncated"]

    assert metric_values(system.projector_url, "projector_records_dead_lettered_total")[""] == 4
    assert readiness(system.projector_url)[0] == 200
    expected = fold_log(list(log.values()))
    assert len(expected.undecodable) == 4
    assert differences(expected, read_stored(mongo[settings.mongodb_database])) == []
