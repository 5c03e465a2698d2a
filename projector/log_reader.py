"""Read the command log from its beginning up to given end offsets (the rebuild's reader).

It uses plain partition assignment (no consumer group offsets are committed),
so a rebuild never disturbs the position of `projector run`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

log = logging.getLogger("projector.log_reader")


class LogUnavailable(Exception):
    """The broker did not answer while reading the log."""


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    low: int
    end: int  # exclusive

    @property
    def records(self) -> int:
        return max(self.end - self.low, 0)


class LogReader:
    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"actionitems-rebuild-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )

    def close(self) -> None:
        self._consumer.close()

    def partitions(self) -> list[int]:
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=self.timeout)
        except KafkaException as exc:
            raise LogUnavailable(f"broker unreachable: {exc}") from exc
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise LogUnavailable(f"topic {self.topic} not found")
        return sorted(topic.partitions)

    def ranges(self) -> list[PartitionRange]:
        """Each partition's current [low, high watermark): where the log starts and ends now."""
        out = []
        for partition in self.partitions():
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=self.timeout, cached=False
                )
            except KafkaException as exc:
                raise LogUnavailable(f"cannot read watermarks: {exc}") from exc
            out.append(PartitionRange(partition, low, high))
        return out

    def ranges_until_time(self, moment: datetime) -> list[PartitionRange]:
        """Ranges that end before the first record at or after ``moment`` (log timestamps)."""
        ranges = self.ranges()
        millis = int(moment.timestamp() * 1000)
        query = [TopicPartition(self.topic, r.partition, millis) for r in ranges]
        try:
            found = self._consumer.offsets_for_times(query, timeout=self.timeout)
        except KafkaException as exc:
            raise LogUnavailable(f"cannot look up offsets for {moment}: {exc}") from exc
        ends = {tp.partition: tp.offset for tp in found}
        return [
            PartitionRange(
                r.partition, r.low, r.end if ends[r.partition] < 0 else ends[r.partition]
            )
            for r in ranges
        ]

    def read(
        self,
        start: dict[int, int],
        end: dict[int, int],
        on_batch: Callable[[list[Message]], None],
        stop: threading.Event,
        batch_size: int = 2000,
    ) -> dict[int, int]:
        """Deliver every record in [start, end) per partition to ``on_batch``, in log order.

        Returns the next offset reached per partition (== end unless stopped).
        """
        pending = {p: s for p, s in start.items() if s < end.get(p, 0)}
        if not pending:
            return dict(start)
        reached = dict(start)
        assignment = [
            TopicPartition(self.topic, p, s if s > 0 else OFFSET_BEGINNING)
            for p, s in pending.items()
        ]
        self._consumer.assign(assignment)
        self._consumer.resume(assignment)  # a partition paused by an earlier read stays paused
        idle_polls = 0
        try:
            while pending and not stop.is_set():
                messages = self._consumer.consume(batch_size, 0.5)
                batch: list[Message] = []
                for msg in messages:
                    err = msg.error()
                    if err is not None:
                        if err.fatal() or err.code() in (
                            KafkaError._ALL_BROKERS_DOWN,
                            KafkaError._TRANSPORT,
                        ):
                            raise LogUnavailable(str(err))
                        continue
                    partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                    if partition not in pending or offset >= end[partition]:
                        continue
                    batch.append(msg)
                    reached[partition] = offset + 1
                if batch:
                    on_batch(batch)
                    idle_polls = 0
                else:
                    idle_polls += 1
                for partition in list(pending):
                    if reached[partition] >= end[partition] or self._position_past(partition, end):
                        pending.pop(partition)
                        reached[partition] = max(reached[partition], end[partition])
                        self._consumer.pause([TopicPartition(self.topic, partition)])
                if idle_polls * 0.5 > self.timeout:
                    raise LogUnavailable(
                        f"no records for {self.timeout:g} s while partitions {sorted(pending)} "
                        "had not reached their end; is the broker up?"
                    )
        finally:
            self._consumer.unassign()
        return reached

    def _position_past(self, partition: int, end: dict[int, int]) -> bool:
        """Compaction can leave gaps: the fetch position may pass the end without a record."""
        try:
            (tp,) = self._consumer.position([TopicPartition(self.topic, partition)])
        except KafkaException:
            return False
        return tp.offset >= end[partition]
