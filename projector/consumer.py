"""The Kafka consumer side: its configuration, the lag gauge, decoding a batch of records."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaException, Message, TopicPartition

from domain.planning import CommandRecord
from domain.rules import LogPosition
from projector import metrics
from projector.health import Health
from projector.settings import ProjectorSettings
from schemas.codec import CommandCodec, DecodeError
from schemas.record_key import is_legacy_key


class Watermarks(Protocol):
    """The part of a consumer the lag gauge reads while a batch waits."""

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]: ...


def consumer_config(settings: ProjectorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": settings.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.consumer_session_timeout_ms,
        "heartbeat.interval.ms": 1_000,
        # A store outage holds a batch while we retry; stay in the group meanwhile.
        "max.poll.interval.ms": 900_000,
        "partition.assignment.strategy": "range",
        "statistics.interval.ms": 1000,
    }


class ConsumerLag:
    """Consumer lag per assigned partition (high watermark minus committed offset) in a gauge.

    Normally fed by librdkafka's statistics (``on_stats`` as the ``stats_cb``),
    served inside ``consume()`` at no broker round trip. While a batch waits
    (store outage, DLQ retry) ``consume()`` is not called, so the loop refreshes
    it from the client's cached high watermarks and the last committed offsets.
    """

    def __init__(self, topic: str, health: Health) -> None:
        self.topic = topic
        self.health = health
        self.committed: dict[int, int] = {}
        self._refreshed = 0.0

    def on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            partitions = stats.get("topics", {}).get(self.topic, {}).get("partitions", {})
        except (ValueError, AttributeError):
            return
        assigned = set(self.health.assignment)
        for key, p in partitions.items():
            if not key.isdigit() or int(key) not in assigned:
                continue
            high, committed = p.get("hi_offset", -1), p.get("committed_offset", -1)
            if committed >= 0:
                self.committed[int(key)] = committed
            else:
                committed = self.committed.get(int(key), max(p.get("lo_offset", 0), 0))
            if high >= 0:
                metrics.LAG.labels(key).set(max(high - committed, 0))

    def committed_to(self, partition: int, offset: int) -> None:
        self.committed[partition] = offset

    def refresh_while_waiting(self, consumer: Watermarks) -> None:
        """At most once a second: lag from cached watermarks (no broker call)."""
        now = time.monotonic()
        if now - self._refreshed < 1.0:
            return
        self._refreshed = now
        for p in self.health.assignment:
            committed = self.committed.get(p)
            if committed is None:
                continue
            with contextlib.suppress(KafkaException):
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), cached=True
                )
                if high is not None and high >= 0:
                    metrics.LAG.labels(str(p)).set(max(high - committed, 0))

    def forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self.committed.pop(p, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(str(p))


def decode_batch(
    codec: CommandCodec, messages: Sequence[Message]
) -> tuple[list[CommandRecord], list[tuple[Message, str]]]:
    good: list[CommandRecord] = []
    bad: list[tuple[Message, str]] = []
    for msg in messages:
        try:
            command = codec.decode(msg.value())
        except DecodeError as exc:
            bad.append((msg, str(exc)))
            continue
        good.append(
            CommandRecord(
                LogPosition(int(msg.partition() or 0), int(msg.offset() or 0)),
                command,
                # the key is never parsed for anything else: only "written before issue 20?"
                legacy_key=is_legacy_key(msg.key(), command.command_id),
            )
        )
    return good, bad
