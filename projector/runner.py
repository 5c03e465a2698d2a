"""`projector run`: the consumer loop. Decode, apply to the store, then commit; never reversed.

What happens when something fails (docs/projector.md has the whole argument):

- the store is unreachable: the batch waits and is retried with backoff;
  nothing is committed meanwhile and /readyz says why;
- the store refuses a record for another reason (a poisoned record): every
  record before it in its partition is applied and committed, that partition
  is paused and *held* at the record and retried with growing backoff, the
  other partitions go on; /readyz, the logs and a metric name the record. A
  record is never skipped: an operator fixes the cause and the hold clears;
- a record cannot be decoded: it goes to the dead-letter topic (retried until
  the broker acknowledges) before its offset is committed;
- an offset commit fails: the records come again and the guards skip them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from pymongo import monitoring

from domain.planning import BatchPlan, CommandRecord
from domain.rules import LogPosition
from projector import metrics
from projector.handover import HandoverGate
from projector.settings import ProjectorSettings
from projector.store import ProjectionStore, StoreRejected, StoreUnavailable
from schemas.codec import CommandCodec, DecodeError

log = logging.getLogger("projector.run")
HOLD_FIRST_RETRY_SECONDS = 1.0
DEAD_LETTER_TIMEOUT_SECONDS = 10.0
PROGRESS_SECONDS = 10.0


class InFlightCommands(monitoring.CommandListener):
    """Every command the projector's MongoClient has sent and not yet had answered.

    Registered on the client, so a hang anywhere (a batch write, the hand-over
    check, a ping) shows up, not only in the calls the loop wraps.
    """

    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self._started[event.request_id] = time.monotonic()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            self._started.pop(event.request_id, None)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self._started.pop(event.request_id, None)

    def oldest_seconds(self) -> float:
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return time.monotonic() - oldest if oldest is not None else 0.0


@dataclass
class Health:
    """What /readyz reports; written by the loop, read by the HTTP thread."""

    store_ok: bool = False
    kafka_ok: bool = False
    last_error: str | None = None
    assignment: list[int] = field(default_factory=list)
    store_commands: InFlightCommands = field(default_factory=InFlightCommands)
    store_stall_seconds: float = 6.0
    dead_letter_error: str | None = None
    held: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        out = []
        waited = self.store_commands.oldest_seconds()
        if waited > self.store_stall_seconds:
            out.append(f"store not answering: a command has been waiting {waited:.0f} s")
        elif not self.store_ok:
            out.append(f"store unreachable: {self.last_error or 'not yet checked'}")
        if not self.kafka_ok:
            out.append("kafka unreachable or consumer not yet joined")
        if self.dead_letter_error:
            out.append(f"dead-letter topic not taking records: {self.dead_letter_error}")
        out.extend(self.held)
        return out


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

    def refresh_while_waiting(self, consumer: Consumer) -> None:
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


def dlq_producer_config(settings: ProjectorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        # a failed delivery is reported within the flush bound instead of lingering
        # in the queue and being sent again alongside the retry
        "message.timeout.ms": int(DEAD_LETTER_TIMEOUT_SECONDS * 1000),
    }


class DeadLetterUnavailable(Exception):
    """The dead-letter topic did not acknowledge every record; none may be committed."""


class DeadLetters:
    """Sends undecodable records to the dead-letter topic, waiting for the broker's ack."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def send(self, messages: Sequence[tuple[Message, str]]) -> None:
        """Write every record with its reason and source position; raise unless all are acked."""
        failures: list[str] = []

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        try:
            for msg, reason in messages:
                self._producer.produce(
                    self._topic,
                    key=msg.key(),
                    value=msg.value(),
                    headers=dead_letter_headers(msg, reason),
                    on_delivery=report,
                )
            remaining = self._producer.flush(DEAD_LETTER_TIMEOUT_SECONDS + 5)
        except (KafkaException, BufferError) as exc:
            raise DeadLetterUnavailable(f"dead-letter topic {self._topic}: {exc}") from exc
        if remaining or failures:
            raise DeadLetterUnavailable(
                f"dead-letter topic {self._topic} did not take {remaining or len(failures)} "
                f"record(s): {failures[:3]}"
            )


def dead_letter_headers(msg: Message, reason: str) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers plus why it failed and where it sits on the source topic."""
    original: list[tuple[str, bytes]] = msg.headers() or []  # type: ignore[assignment]
    _kind, timestamp = msg.timestamp()
    return [
        *original,
        ("dlq.reason", reason.encode()),
        ("dlq.source.topic", str(msg.topic()).encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.source.timestamp", str(timestamp).encode()),
    ]


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


def merge_plans(plans: Sequence[BatchPlan]) -> BatchPlan:
    """One plan from the plans of parts of a batch (lists concatenated, next offsets maxed)."""
    merged = BatchPlan()
    for plan in plans:
        for f in fields(BatchPlan):
            value, target = getattr(plan, f.name), getattr(merged, f.name)
            if isinstance(value, list):
                target.extend(value)
            elif isinstance(value, dict):
                for key, offset in value.items():
                    target[key] = max(target.get(key, offset), offset)
    return merged


def record_metrics(plan: BatchPlan) -> None:
    for outcome in plan.outcomes:
        if outcome.status == "applied":
            metrics.APPLIED.inc()
        elif outcome.exception is not None:
            metrics.REJECTED.labels(str(outcome.exception.code)).inc()
    metrics.SKIPPED.labels("resent_copy").inc(len(plan.duplicates))
    metrics.SKIPPED.labels("already_applied").inc(len(plan.already_applied))
    metrics.SKIPPED.labels("status_stored").inc(len(plan.decided_before))


def log_outcomes(plan: BatchPlan) -> None:
    """One structured line per command: rejections at INFO, the rest at DEBUG."""
    debug = log.isEnabledFor(logging.DEBUG)
    for o in plan.outcomes:
        if o.exception is None and not debug:
            continue
        log.log(
            logging.DEBUG if o.exception is None else logging.INFO,
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
    if debug:
        skipped = [(r, "re-sent copy") for r in plan.duplicates]
        skipped += [(r, "redelivered, already applied") for r in plan.already_applied]
        skipped += [(r, "redelivered, status already stored") for r in plan.decided_before]
        for record, why in skipped:
            log.debug(
                "command skipped: %s",
                why,
                extra={
                    "commandId": record.command.command_id,
                    "partition": record.position.partition,
                    "offset": record.position.offset,
                },
            )


@dataclass
class Progress:
    """Counts since the last progress line (INFO, every PROGRESS_SECONDS while busy)."""

    applied: int = 0
    rejected: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    batches: int = 0
    since: float = field(default_factory=time.monotonic)

    def add(self, plan: BatchPlan, dead_lettered: int) -> None:
        self.batches += 1
        self.dead_lettered += dead_lettered
        for o in plan.outcomes:
            if o.exception is None:
                self.applied += 1
            else:
                self.rejected += 1
        self.skipped += len(plan.duplicates) + len(plan.already_applied)

    def report_if_due(self) -> Progress:
        elapsed = time.monotonic() - self.since
        if elapsed < PROGRESS_SECONDS or not self.batches:
            return self
        log.info(
            "progress",
            extra={
                "applied": self.applied,
                "rejected": self.rejected,
                "skipped": self.skipped,
                "deadLettered": self.dead_lettered,
                "batches": self.batches,
                "commandsPerSecond": round((self.applied + self.rejected) / elapsed, 1),
            },
        )
        return Progress()


@dataclass
class StoredBatch:
    """What the store took of a batch, and per partition the first record it refused."""

    plan: BatchPlan
    refused: dict[int, tuple[CommandRecord, str]] = field(default_factory=dict)


@dataclass
class PartitionHold:
    """A partition paused at a record the store refuses; its later records wait in memory."""

    partition: int
    offset: int
    command_id: str
    error: str
    attempts: int
    retry_at: float
    messages: list[Message]

    def describe(self) -> str:
        wait = max(self.retry_at - time.monotonic(), 0.0)
        return (
            f"partition {self.partition} held at offset {self.offset} "
            f"(commandId {self.command_id}): the store refused it {self.attempts} time(s): "
            f"{self.error}; next retry in {wait:.0f} s"
        )


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


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
        lag: ConsumerLag | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.health = health
        self.stop = stop
        self.gate = gate
        self.codec = CommandCodec()
        self.topic = settings.commands_topic
        self.lag = lag or ConsumerLag(self.topic, health)
        self.holds: dict[int, PartitionHold] = {}
        self._last_store_check = 0.0
        self.progress = Progress()
        self.health.store_stall_seconds = max(2 * settings.mongodb_timeout_ms / 1000, 3.0)

    # -- the loop ------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._wait_for_store()
        try:
            while not self.stop.is_set():
                self.gate.before_batch()
                if self.stop.is_set():
                    break
                messages = self.consumer.consume(
                    self.settings.batch_size, self.settings.poll_timeout_seconds
                )
                retrying = self._due_holds()
                fresh = self._divert_held([m for m in messages if not self._is_error(m)])
                batch = [m for hold in retrying.values() for m in hold.messages] + fresh
                if batch:
                    if not self._process(batch, retrying):
                        break  # stopping while the batch waited: commit nothing more
                else:
                    self._probe_idle_store()
        finally:
            log.info("closing consumer (leaves the group, uncommitted records are redelivered)")
            self.consumer.close()
            self.gate.leave()

    def _process(self, batch: list[Message], retrying: dict[int, PartitionHold]) -> bool:
        """Store the batch's effect, dead-letter what cannot be read, then commit; False: stop."""
        started = time.perf_counter()
        good, bad = decode_batch(self.codec, batch)
        stored = self._store(good)
        if stored is None:
            return False
        held_at = {p: record.position.offset for p, (record, _) in stored.refused.items()}

        def done(msg: Message) -> bool:
            p = int(msg.partition() or 0)
            return p not in held_at or int(msg.offset() or 0) < held_at[p]

        undecodable = [(m, reason) for m, reason in bad if done(m)]
        if undecodable and not self._dead_letter(undecodable):
            return False
        record_metrics(stored.plan)
        log_outcomes(stored.plan)
        self.progress.add(stored.plan, len(undecodable))
        for p, (record, error) in stored.refused.items():
            waiting = [m for m in batch if int(m.partition() or 0) == p and not done(m)]
            self._hold(record, error, waiting, retrying.get(p))
        for p, hold in retrying.items():
            if p not in stored.refused:
                self._release(hold)
        self._commit([m for m in batch if done(m)])
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(batch))
        self.progress = self.progress.report_if_due()
        return True

    # -- the store -----------------------------------------------------------
    def _store(self, records: list[CommandRecord]) -> StoredBatch | None:
        """Apply with backoff while the store is unreachable; None when asked to stop meanwhile."""
        if not records:
            return StoredBatch(BatchPlan())
        delay = 0.1
        while True:
            try:
                stored = self._apply_or_isolate(records)
                self._store_is(True)
                return stored
            except StoreUnavailable as exc:
                self._store_is(False, str(exc))
                metrics.STORE_RETRIES.inc()
                self.lag.refresh_while_waiting(self.consumer)
                log.error(
                    "store unreachable; batch held, nothing committed; retrying",
                    extra={"retryInSeconds": delay, "records": len(records), "error": str(exc)},
                )
                if self.stop.wait(delay):
                    return None
                delay = min(delay * 2, self.settings.store_retry_max_seconds)

    def _apply_or_isolate(self, records: list[CommandRecord]) -> StoredBatch:
        try:
            return StoredBatch(self.store.apply(records))
        except StoreUnavailable:
            raise
        except Exception as exc:
            self._ping_or_outage(exc)
            log.error(
                "the store refused the batch for a reason other than an outage; "
                "applying its partitions, then its records, one by one to find the culprit",
                extra={"records": len(records), "error": error_text(exc)},
                exc_info=not isinstance(exc, StoreRejected),  # a trace only for the unexpected
            )
            return self._isolate(records)

    def _ping_or_outage(self, cause: Exception) -> None:
        """An outage in disguise (e.g. the store's own database gone) is retried as an outage."""
        try:
            self.store.ping()
        except (StoreUnavailable, StoreRejected) as exc:
            raise StoreUnavailable(
                f"{error_text(cause)}; and the store does not answer a ping: {exc}"
            ) from cause

    def _isolate(self, records: list[CommandRecord]) -> StoredBatch:
        by_partition: dict[int, list[CommandRecord]] = {}
        for record in records:
            by_partition.setdefault(record.position.partition, []).append(record)
        plans: list[BatchPlan] = []
        refused: dict[int, tuple[CommandRecord, str]] = {}
        for partition, part in by_partition.items():
            try:
                plans.append(self.store.apply(part))
                continue
            except StoreUnavailable:
                raise
            except Exception:
                log.debug("partition refused as a whole", extra={"partition": partition})
            for record in part:
                try:
                    plans.append(self.store.apply([record]))
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    metrics.RECORD_FAILURES.inc()
                    refused[partition] = (record, error_text(exc))
                    break
        return StoredBatch(merge_plans(plans), refused)

    def _store_is(self, ok: bool, error: str | None = None) -> None:
        self.health.store_ok = ok
        self.health.last_error = error
        self._last_store_check = time.monotonic()
        metrics.STORE_UP.set(1 if ok else 0)

    def _wait_for_store(self) -> None:
        delay = 0.1
        while not self.stop.is_set():
            try:
                self.store.ping()
                self.store.ensure_indexes()
                self._store_is(True)
                return
            except (StoreUnavailable, StoreRejected) as exc:
                self._store_is(False, str(exc))
                log.error("store not usable at start-up; waiting", extra={"error": str(exc)})
                self.stop.wait(delay)
                delay = min(delay * 2, self.settings.store_retry_max_seconds)

    def _probe_idle_store(self) -> None:
        """With nothing to apply, still notice (and report) a store that went away."""
        if time.monotonic() - self._last_store_check < self.settings.idle_probe_seconds:
            return
        try:
            self.store.ping()
            self._store_is(True)
        except (StoreUnavailable, StoreRejected) as exc:
            self._store_is(False, str(exc))
            log.warning("store not answering while idle", extra={"error": str(exc)})

    # -- held partitions -----------------------------------------------------
    def _hold(
        self,
        record: CommandRecord,
        error: str,
        messages: list[Message],
        previous: PartitionHold | None,
    ) -> None:
        partition = record.position.partition
        attempts = previous.attempts + 1 if previous is not None else 1
        delay = min(
            HOLD_FIRST_RETRY_SECONDS * 2 ** (attempts - 1), self.settings.hold_retry_max_seconds
        )
        if previous is None:
            self.consumer.pause([TopicPartition(self.topic, partition)])
        hold = PartitionHold(
            partition,
            record.position.offset,
            record.command.command_id,
            error,
            attempts,
            time.monotonic() + delay,
            messages,
        )
        self.holds[partition] = hold
        log.error(
            "partition held: the store keeps refusing this command; everything before it is "
            "applied and committed, nothing after it in this partition is processed until it "
            "goes through (other partitions go on)",
            extra={
                "commandId": hold.command_id,
                "partition": partition,
                "offset": hold.offset,
                "attempt": attempts,
                "retryInSeconds": delay,
                "error": error,
            },
        )
        self._publish_holds()

    def _release(self, hold: PartitionHold) -> None:
        self.consumer.resume([TopicPartition(self.topic, hold.partition)])
        log.info(
            "held partition released: the command went through",
            extra={
                "commandId": hold.command_id,
                "partition": hold.partition,
                "offset": hold.offset,
                "attempts": hold.attempts + 1,
            },
        )
        self._publish_holds()

    def _due_holds(self) -> dict[int, PartitionHold]:
        now = time.monotonic()
        due = {p: h for p, h in self.holds.items() if h.retry_at <= now}
        for p in due:
            del self.holds[p]
        return due

    def _divert_held(self, messages: list[Message]) -> list[Message]:
        """Messages of a held partition wait behind the refused record, in order."""
        if not self.holds:
            return messages
        fresh = []
        for msg in messages:
            hold = self.holds.get(int(msg.partition() or 0))
            if hold is None:
                fresh.append(msg)
            elif int(msg.offset() or 0) > int(hold.messages[-1].offset() or 0):
                hold.messages.append(msg)
        return fresh

    def _publish_holds(self) -> None:
        self.health.held = tuple(h.describe() for h in self.holds.values())
        metrics.HELD_PARTITIONS.set(len(self.holds))

    # -- Kafka -----------------------------------------------------------------
    def _dead_letter(self, bad: list[tuple[Message, str]]) -> bool:
        """Write to the DLQ until the broker acknowledges; False when asked to stop meanwhile."""
        for msg, reason in bad:
            log.error(
                "undecodable record sent to the dead-letter topic",
                extra={"partition": msg.partition(), "offset": msg.offset(), "reason": reason},
            )
        delay = 0.5
        while True:
            try:
                self.dead_letters.send(bad)
                self.health.dead_letter_error = None
                metrics.DEAD_LETTERED.inc(len(bad))
                return True
            except DeadLetterUnavailable as exc:
                metrics.DLQ_FAILURES.inc()
                self.lag.refresh_while_waiting(self.consumer)
                self.health.dead_letter_error = str(exc)
                log.error(
                    "dead-letter topic did not take the records; batch held, nothing committed; "
                    "retrying (copies already written may appear twice in the DLQ)",
                    extra={"retryInSeconds": delay, "error": str(exc)},
                )
                if self.stop.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.store_retry_max_seconds)

    def _commit(self, messages: list[Message]) -> None:
        next_offsets: dict[int, int] = {}
        for msg in messages:
            p = int(msg.partition() or 0)
            next_offsets[p] = max(next_offsets.get(p, 0), int(msg.offset() or 0) + 1)
        if not next_offsets:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in next_offsets.items()]
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # the effects are stored: whoever owns the partitions next gets the records
            # again and the guards skip them
            metrics.COMMIT_FAILURES.inc()
            log.warning(
                "offset commit failed; the records will be redelivered and skipped",
                extra={"error": str(exc), "offsets": next_offsets},
            )
            return
        for tp in result or []:
            if tp.error is not None:
                metrics.COMMIT_FAILURES.inc()
                log.warning(
                    "offset commit failed for a partition; its records will be redelivered",
                    extra={"partition": tp.partition, "error": str(tp.error)},
                )
            else:
                self.lag.committed_to(tp.partition, tp.offset)

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

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            # librdkafka keeps a partition paused across a reassignment; holds were dropped
            # on revoke, so every partition starts afresh from its committed offset
            consumer.assign(partitions)
            consumer.resume(partitions)
        self.health.kafka_ok = True
        self.health.assignment = sorted(p.partition for p in partitions)
        log.info("partitions assigned", extra={"partitions": self.health.assignment})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = sorted(p.partition for p in partitions)
        log.info("partitions revoked", extra={"partitions": revoked})
        for p in revoked:
            # a held partition's waiting records are dropped: its next owner starts at the
            # committed offset, which is the refused record
            self.holds.pop(p, None)
        self.lag.forget(revoked)
        self._publish_holds()
        self.health.assignment = []
