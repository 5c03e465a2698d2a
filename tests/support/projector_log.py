"""Write commands straight onto a real topic and read the log back, for projector tests.

Producing with the codec (not through the command API) is what lets a test put
thousands of commands, re-sent copies and garbage on the log in a second; the
partition comes from ``partition_for`` exactly as the command API computes it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from domain.commands import CommandEnvelope, CreateActionItem, Priority, Status, UpdateActionItem
from schemas.codec import CommandCodec
from schemas.partitioning import partition_for
from schemas.record_key import COMMAND_ID_HEADER, record_key
from tests.support.log_record import LogRecord

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
        }
    )


def produce_commands(
    bootstrap: str,
    topic: str,
    partitions: int,
    commands: Iterable[CommandEnvelope],
    codec: CommandCodec | None = None,
) -> int:
    """Produce every command as the command API does (a record key of its own per record,
    ``<commandId>.<attemptId>``; partitioned by actionItemId); all acked."""
    codec = codec or CommandCodec()
    out = producer(bootstrap)
    failures: list[str] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for command in commands:
        while True:
            try:
                out.produce(
                    topic,
                    key=record_key(command.command_id).encode(),
                    value=codec.encode(command),
                    partition=partition_for(command.action_item_id, partitions),
                    headers=[(COMMAND_ID_HEADER, command.command_id.encode())],
                    on_delivery=report,
                )
                break
            except BufferError:
                out.poll(0.05)
        count += 1
        if count % 5000 == 0:
            out.poll(0)
    remaining = out.flush(60)
    if remaining or failures:
        raise RuntimeError(f"{remaining} not delivered, failures: {failures[:3]}")
    return count


def produce_one(
    bootstrap: str, topic: str, partitions: int, command: CommandEnvelope
) -> tuple[int, int]:
    """Produce one command as the command API would; returns its (partition, offset)."""
    out = producer(bootstrap)
    delivered: list[tuple[int, int]] = []

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            delivered.append((int(msg.partition() or 0), int(msg.offset() or 0)))

    out.produce(
        topic,
        key=record_key(command.command_id).encode(),
        value=CommandCodec().encode(command),
        partition=partition_for(command.action_item_id, partitions),
        headers=[(COMMAND_ID_HEADER, command.command_id.encode())],
        on_delivery=report,
    )
    out.flush(30)
    if not delivered:
        raise RuntimeError("command not delivered")
    return delivered[0]


def produce_raw(
    bootstrap: str, topic: str, partition: int, value: bytes | None, key: bytes | None = None
) -> None:
    """Put one arbitrary record (garbage, a tombstone) on the log."""
    out = producer(bootstrap)
    out.produce(topic, key=key, value=value, partition=partition)
    if out.flush(30):
        raise RuntimeError("raw record not delivered")


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex}"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def read_log(bootstrap: str, topic: str, partitions: int, timeout: float = 30) -> list[LogRecord]:
    """Every record of the topic from its start to the high watermark seen now, in log order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        consumer.assign(starts)
        records: list[LogRecord] = []
        pending = dict(ends)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is not None:
                    continue
                p, o = int(msg.partition() or 0), int(msg.offset() or 0)
                if p in pending and o < ends[p]:
                    records.append(LogRecord(p, o, msg.key(), msg.value(), header_bytes(msg)))
                    if o + 1 >= ends[p]:
                        pending.pop(p)
        if pending:
            raise TimeoutError(f"could not read partitions {sorted(pending)} to their end")
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def header_bytes(msg: Message) -> dict[str, bytes]:
    """A consumed record's headers by name (a header without a value is left out)."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {
        name: value.encode() if isinstance(value, str) else value
        for name, value in pairs
        if value is not None
    }


def read_topic_messages(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 30
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """(key, value, headers) of the first ``expected`` records of a topic (e.g. the DLQ)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    out.append((msg.key(), msg.value(), header_bytes(msg)))
        return out
    finally:
        consumer.close()


# -- a realistic mix of commands ------------------------------------------------


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class _Item:
    id: str
    commands: int = 0
    key: str | None = None
    create: CommandEnvelope | None = None


class CommandMix:
    """A seeded stream of creates and updates over a pool of items, with every rejection kind.

    ``rejections`` is the share of commands built to be rejected (stale If-Match,
    an illegal status change, an update of an unknown item, a second create of
    an existing id, an Idempotency-Key reused for another payload);
    ``resend`` the share of commands that are a re-sent copy of an earlier one
    (same commandId, as a client retry with the same Idempotency-Key produces).
    """

    def __init__(
        self, items: int, seed: int = 5, rejections: float = 0.1, resend: float = 0.02
    ) -> None:
        self.rng = random.Random(seed)
        self.pool = [_Item(_uuid(self.rng)) for _ in range(items)]
        self.rejections = rejections
        self.resend = resend
        self.sent: list[CommandEnvelope] = []
        self.at = 0

    def take(self, count: int) -> list[CommandEnvelope]:
        return [self.next() for _ in range(count)]

    def __iter__(self) -> Iterator[CommandEnvelope]:
        while True:
            yield self.next()

    def next(self) -> CommandEnvelope:
        self.at += 1
        rng = self.rng
        if self.sent and rng.random() < self.resend:
            # a retry of a recent command: same commandId, accepted again later
            earlier = self.sent[-rng.randint(1, min(50, len(self.sent)))]
            copy = replace(earlier, accepted_at=self._now())
            self.sent.append(copy)
            return copy
        item = rng.choice(self.pool)
        command = self._for(item, rng.random() < self.rejections)
        item.commands += 1
        self.sent.append(command)
        return command

    def _now(self) -> datetime:
        return T0 + timedelta(milliseconds=self.at)

    def _envelope(
        self,
        item_id: str,
        payload: CreateActionItem | UpdateActionItem,
        *,
        key: str | None = None,
        expected: int | None = None,
    ) -> CommandEnvelope:
        return CommandEnvelope(
            command_id=_uuid(self.rng),
            action_item_id=item_id,
            accepted_at=self._now(),
            correlation_id=f"mix-{self.at}",
            payload_hash=f"{self.at:x}",
            payload=payload,
            idempotency_key_hash=key,
            expected_version=expected,
        )

    def _for(self, item: _Item, reject: bool) -> CommandEnvelope:
        rng = self.rng
        if item.create is None:
            if reject and rng.random() < 0.5:
                return self._envelope(_uuid(rng), UpdateActionItem(frozenset({"title"}), "x"))
            item.key = f"key-{item.id}" if rng.random() < 0.3 else None
            item.create = self._envelope(
                item.id,
                CreateActionItem(
                    title=f"item {item.id[:8]}",
                    assignee=rng.choice([None, "ann", "bob"]),
                    priority=rng.choice(list(Priority)),
                    tags=tuple(rng.sample(["a", "b", "c", "d"], rng.randint(0, 2))),
                ),
                key=item.key,
            )
            return item.create
        if reject:
            kind = rng.randrange(4)
            if kind == 0:
                return self._envelope(item.id, CreateActionItem(title="again"))
            if kind == 1 and item.key is not None:
                return self._envelope(
                    item.id, UpdateActionItem(frozenset({"title"}), "other"), key=item.key
                )
            if kind == 2:
                return self._envelope(
                    item.id,
                    UpdateActionItem(frozenset({"title"}), "late"),
                    expected=rng.randint(1, item.commands + 2),
                )
            return self._envelope(
                _uuid(rng), UpdateActionItem(frozenset({"assignee"}), assignee="ghost")
            )
        given: set[str] = set()
        status: Status | None = None
        title: str | None = None
        tags: tuple[str, ...] | None = None
        assignee: str | None = None
        due: str | None = None
        roll = rng.random()
        if roll < 0.4:
            status = rng.choice(list(Status))  # some of these are illegal
            given.add("status")
        if roll > 0.3:
            title = f"t{self.at}"
            given.add("title")
        if rng.random() < 0.3:
            tags = tuple(rng.sample(["a", "b", "c", "d", "e"], rng.randint(0, 3)))
            given.add("tags")
        if rng.random() < 0.2:
            assignee = rng.choice([None, "ann", "cy"])
            given.add("assignee")
        if rng.random() < 0.1:
            due = rng.choice([None, "2027-01-31"])
            given.add("dueDate")
        patch = UpdateActionItem(
            frozenset(given), title=title, assignee=assignee, dueDate=due, tags=tags, status=status
        )
        return self._envelope(
            item.id,
            patch,
            expected=item.commands + 1 if rng.random() < 0.05 else None,
        )


def commands_by_partition(
    commands: Sequence[CommandEnvelope], partitions: int
) -> dict[int, list[CommandEnvelope]]:
    out: dict[int, list[CommandEnvelope]] = {}
    for c in commands:
        out.setdefault(partition_for(c.action_item_id, partitions), []).append(c)
    return out
