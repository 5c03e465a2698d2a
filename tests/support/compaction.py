"""Make the broker's log cleaner compact a command topic for real, then rebuild and compare.

``compact_now`` sets the topic's cleaner settings low (the broker of
infra/kafka.sh checks every 0.5 s, ``log.cleaner.backoff.ms``), writes one
*legacy-keyed* marker per partition (a create and an identical copy under the
key = its commandId, as every record was keyed before issue 20), and then
rolls the active segment with further creates until the cleaner has removed
every marker's first copy. The cleaner cleans a partition from its start, so a
marker's first copy gone means every record before it went through a cleaning
pass. The markers are real commands and take part in the comparisons: live,
the second copy moved the command's position to itself; rebuilt after
compaction, only that copy is left, so both agree (the legacy rule).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from domain.commands import CommandEnvelope, CreateActionItem
from schemas.codec import CommandCodec
from schemas.partitioning import partition_for
from schemas.record_key import COMMAND_ID_HEADER, record_key
from tests.support.command_log import by_command, read_records
from tests.support.log_record import LogRecord

CLEANER_SETTINGS = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


@dataclass
class Compaction:
    """What one forced cleaner pass did."""

    before: list[LogRecord]  # the topic before anything of this helper was written
    after: list[LogRecord]  # the topic once the cleaner removed every marker's first copy
    markers: list[CommandEnvelope] = field(default_factory=list)
    rolls: list[CommandEnvelope] = field(default_factory=list)
    removed_markers: list[tuple[int, int]] = field(default_factory=list)

    def removed_from_before(self) -> list[tuple[int, int]]:
        """Positions of records that were on the topic before and are gone now."""
        kept = {(r.partition, r.offset) for r in self.after}
        return sorted(
            (r.partition, r.offset) for r in self.before if (r.partition, r.offset) not in kept
        )

    def producer_duplicates(self) -> list[tuple[int, int]]:
        """Positions of the records of ``before`` whose key a later record repeats.

        One produce call leaves one key, but librdkafka's idempotent producer can
        write a call twice after it bumped its epoch (in-flight records that timed
        out are sent again under a new sequence, which the broker cannot tell from
        new records: confluentinc/librdkafka#4953); the cleaner keeps only the
        later of the two.
        """
        last: dict[tuple[int, bytes | None], int] = {}
        for r in self.before:
            last[(r.partition, r.key)] = r.offset
        return sorted(
            (r.partition, r.offset) for r in self.before if last[(r.partition, r.key)] > r.offset
        )

    def helper_item_ids(self) -> set[str]:
        return {c.action_item_id for c in (*self.markers, *self.rolls)}

    def helper_command_ids(self) -> set[str]:
        return {c.command_id for c in (*self.markers, *self.rolls)}


def _create(item_id: str, title: str) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=str(uuid.uuid4()),
        action_item_id=item_id,
        accepted_at=datetime.now(UTC).replace(microsecond=0),
        correlation_id="compaction-helper",
        payload_hash=title,
        payload=CreateActionItem(title=title),
    )


def _item_on(partition: int, partitions: int) -> str:
    while True:
        item = str(uuid.uuid4())
        if partition_for(item, partitions) == partition:
            return item


class _Writer:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.codec = CommandCodec()
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
        )
        self.delivered: list[tuple[str, int, int]] = []
        self.failures: list[str] = []

    def write(self, command: CommandEnvelope, partition: int, key: str) -> None:
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failures.append(str(err))
            else:
                self.delivered.append((key, int(msg.partition() or 0), int(msg.offset() or 0)))

        self.producer.produce(
            self.topic,
            key=key.encode(),
            value=self.codec.encode(command),
            partition=partition,
            headers=[(COMMAND_ID_HEADER, command.command_id.encode())],
            on_delivery=report,
        )

    def flush(self) -> None:
        if self.producer.flush(30) or self.failures:
            raise RuntimeError(f"compaction helper: records not delivered: {self.failures[:3]}")


def compact_now(bootstrap: str, topic: str, partitions: int, timeout: float = 180) -> Compaction:
    """Run the log cleaner over every partition of ``topic`` now (see the module docstring)."""
    before = read_records(bootstrap, topic, 60)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in CLEANER_SETTINGS.items()
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(30)
    writer = _Writer(bootstrap, topic)
    result = Compaction(before, [])
    first_copies: dict[tuple[int, int], str] = {}
    for partition in range(partitions):
        marker = _create(_item_on(partition, partitions), f"compaction marker {partition}")
        result.markers.append(marker)
        for _copy in range(2):  # legacy key: the commandId itself, as before issue 20
            writer.write(marker, partition, marker.command_id)
        writer.flush()
        first = min((p, o) for k, p, o in writer.delivered if k == marker.command_id)
        first_copies[first] = marker.command_id
    deadline = time.monotonic() + timeout
    while True:
        # the active segment is never cleaned: roll it (segment.ms has passed) with a create
        time.sleep(0.5)
        for partition in range(partitions):
            roll = _create(_item_on(partition, partitions), "segment roll")
            result.rolls.append(roll)
            writer.write(roll, partition, record_key(roll.command_id))
        writer.flush()
        after = read_records(bootstrap, topic, 60)
        kept = {(r.partition, r.offset) for r in after}
        if not kept & first_copies.keys():
            break
        if time.monotonic() > deadline:
            left = sorted(kept & first_copies.keys())
            raise AssertionError(
                f"the log cleaner did not compact {topic} within {timeout:.0f} s: marker first "
                f"copies still at {left}; nothing was changed but the topic's cleaner settings "
                f"and {len(result.rolls)} marker/roll records; check the broker's log-cleaner log"
            )
    result.after = after
    result.removed_markers = sorted(first_copies)
    copies = by_command(after)
    for marker in result.markers:
        assert len(copies[marker.command_id]) == 1, f"marker {marker.command_id} not compacted"
    return result


def run_rebuild(env: dict[str, str], *args: str, timeout: float = 600) -> dict[str, Any]:
    """`projector rebuild --output json` as a process; its result line (fails on an error)."""
    run = subprocess.run(
        [sys.executable, "-m", "projector.cli", "rebuild", "--output", "json", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, f"rebuild failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    (result,) = [e for e in events if e["event"] == "result"]
    return dict(result)


@dataclass
class Comparison:
    compared: int  # documents of the reference model compared
    differences: list[str]  # "<collection>/<_id>: how" for every document that is not equal


def compare_models(
    reference: dict[str, dict[str, Any]],
    other: dict[str, dict[str, Any]],
    extra_allowed: set[str] | None = None,
) -> Comparison:
    """Every document of ``reference`` (collection -> _id -> doc) against ``other``.

    ``other`` may hold more documents only with an _id in ``extra_allowed``.
    """
    compared = 0
    out: list[str] = []
    for collection, docs in reference.items():
        theirs = other.get(collection, {})
        for doc_id, doc in docs.items():
            compared += 1
            if doc_id not in theirs:
                out.append(f"{collection}/{doc_id}: missing")
            elif theirs[doc_id] != doc:
                out.append(f"{collection}/{doc_id}: {doc!r} != {theirs[doc_id]!r}")
        for doc_id in theirs.keys() - docs.keys():
            if extra_allowed is None or str(doc_id) not in extra_allowed:
                out.append(f"{collection}/{doc_id}: unexpected")
    return Comparison(compared, out)
