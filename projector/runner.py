"""`projector run`: the consumer loop. Decode, apply to the store, then commit; never reversed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from projector import metrics
from projector.batch import BatchPlan, CommandRecord
from projector.domain import LogPosition
from projector.handover import HandoverGate
from projector.settings import ProjectorSettings
from projector.store import ProjectionStore, StoreUnavailable
from schemas.codec import CommandCodec, DecodeError

log = logging.getLogger("projector.run")


@dataclass
class Health:
    """What /readyz reports; written by the loop, read by the HTTP thread."""

    store_ok: bool = False
    kafka_ok: bool = False
    last_error: str | None = None
    assignment: list[int] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if not self.store_ok:
            out.append(f"store unreachable: {self.last_error or 'not yet checked'}")
        if not self.kafka_ok:
            out.append("kafka unreachable or consumer not yet joined")
        return out


def consumer_config(settings: ProjectorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": settings.consumer_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        # A store outage holds a batch while we retry; stay in the group meanwhile.
        "max.poll.interval.ms": 900_000,
        "partition.assignment.strategy": "range",
    }


def dlq_producer_config(settings: ProjectorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    }


class DeadLetters:
    """Sends undecodable records to the dead-letter topic, waiting for the broker's ack."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def send(self, messages: Sequence[tuple[Message, str]]) -> None:
        failures: list[str] = []

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for msg, reason in messages:
            original: list[tuple[str, bytes]] = msg.headers() or []  # type: ignore[assignment]
            headers: list[tuple[str, str | bytes | None]] = [(k, v) for k, v in original]
            headers += [
                ("dlq.reason", reason.encode()),
                ("dlq.source.topic", str(msg.topic()).encode()),
                ("dlq.source.partition", str(msg.partition()).encode()),
                ("dlq.source.offset", str(msg.offset()).encode()),
            ]
            self._producer.produce(
                self._topic, key=msg.key(), value=msg.value(), headers=headers, on_delivery=report
            )
        remaining = self._producer.flush(30)
        if remaining or failures:
            raise RuntimeError(
                f"dead-letter topic {self._topic} did not take {remaining or len(failures)} "
                f"record(s): {failures[:3]}"
            )


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
            CommandRecord(LogPosition(int(msg.partition() or 0), int(msg.offset() or 0)), command)
        )
    return good, bad


def record_metrics(plan: BatchPlan) -> None:
    for outcome in plan.outcomes:
        if outcome.status == "applied":
            metrics.APPLIED.inc()
        elif outcome.exception is not None:
            metrics.REJECTED.labels(str(outcome.exception.code)).inc()
    metrics.DUPLICATES.inc(len(plan.duplicates) + len(plan.already_applied))


def log_outcomes(plan: BatchPlan) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    for o in plan.outcomes:
        log.info(
            "command %s",
            o.status,
            extra={
                "commandId": o.command_id,
                "actionItemId": o.action_item_id,
                "code": str(o.exception.code) if o.exception else None,
                "partition": o.position.partition,
                "offset": o.position.offset,
            },
        )


class ProjectorLoop:
    def __init__(
        self,
        settings: ProjectorSettings,
        store: ProjectionStore,
        consumer: Consumer,
        dead_letters: DeadLetters,
        health: Health,
        stop: threading.Event,
        gate: HandoverGate,
    ) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.health = health
        self.stop = stop
        self.gate = gate
        self.codec = CommandCodec()

    def run(self) -> None:
        self.consumer.subscribe(
            [self.settings.commands_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._wait_for_store()
        last_lag = 0.0
        try:
            while not self.stop.is_set():
                self.gate.before_batch()
                if self.stop.is_set():
                    break
                messages = self.consumer.consume(
                    self.settings.batch_size, self.settings.poll_timeout_seconds
                )
                records = [m for m in messages if not self._is_error(m)]
                if records and not self._process(records):
                    break  # stopping during a store outage: commit nothing more
                if time.monotonic() - last_lag > 5:
                    self._update_lag()
                    last_lag = time.monotonic()
        finally:
            log.info("closing consumer (leaves the group, uncommitted records are redelivered)")
            self.consumer.close()
            self.gate.leave()

    def _process(self, messages: list[Message]) -> bool:
        started = time.perf_counter()
        good, bad = decode_batch(self.codec, messages)
        if bad:
            for msg, reason in bad:
                log.error(
                    "undecodable record sent to the dead-letter topic",
                    extra={"partition": msg.partition(), "offset": msg.offset(), "reason": reason},
                )
            self.dead_letters.send(bad)
            metrics.DEAD_LETTERED.inc(len(bad))
        if good:
            plan = self._apply_with_retry(good)
            if plan is None:
                return False
            record_metrics(plan)
            log_outcomes(plan)
        self._commit(messages)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(messages))
        return True

    def _apply_with_retry(self, records: list[CommandRecord]) -> BatchPlan | None:
        delay = 0.1
        while True:
            try:
                plan = self.store.apply(records)
                self._store_is(True)
                return plan
            except StoreUnavailable as exc:
                self._store_is(False, str(exc))
                log.error(
                    "store unreachable; batch held, nothing committed; retrying",
                    extra={"retryInSeconds": delay, "records": len(records), "error": str(exc)},
                )
                if self.stop.wait(delay):
                    return None
                delay = min(delay * 2, self.settings.store_retry_max_seconds)

    def _commit(self, messages: list[Message]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            key = (str(msg.topic()), int(msg.partition() or 0))
            next_offsets[key] = max(next_offsets.get(key, 0), int(msg.offset() or 0) + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # a rebalance moved the partitions: the new owner redoes them
            log.warning(
                "offset commit failed; the records will be redelivered (idempotent)",
                extra={"error": str(exc)},
            )

    def _wait_for_store(self) -> None:
        delay = 0.1
        while not self.stop.is_set():
            try:
                self.store.ping()
                self.store.ensure_indexes()
                self._store_is(True)
                return
            except StoreUnavailable as exc:
                self._store_is(False, str(exc))
                log.error("store unreachable at start-up; waiting", extra={"error": str(exc)})
                self.stop.wait(delay)
                delay = min(delay * 2, self.settings.store_retry_max_seconds)

    def _store_is(self, ok: bool, error: str | None = None) -> None:
        self.health.store_ok = ok
        self.health.last_error = error
        metrics.STORE_UP.set(1 if ok else 0)

    def _is_error(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error", extra={"error": str(err)})
            self.health.kafka_ok = not err.fatal() and err.code() not in (
                KafkaError._ALL_BROKERS_DOWN,
                KafkaError._TRANSPORT,
            )
        return True

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.kafka_ok = True
        self.health.assignment = sorted(p.partition for p in partitions)
        log.info("partitions assigned", extra={"partitions": self.health.assignment})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "partitions revoked", extra={"partitions": sorted(p.partition for p in partitions)}
        )
        self.health.assignment = []

    def _update_lag(self) -> None:
        try:
            assigned = self.consumer.assignment()
            if not assigned:
                return
            for tp in self.consumer.position(assigned):
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=1, cached=False)
                position = tp.offset if tp.offset >= 0 else 0
                metrics.LAG.labels(str(tp.partition)).set(max(high - position, 0))
            self.health.kafka_ok = True
        except Exception as exc:
            self.health.kafka_ok = False
            log.warning("could not read consumer lag", extra={"error": str(exc)})
