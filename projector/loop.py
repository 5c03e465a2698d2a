"""`projector run`: the consumer loop. Decode, apply to the store, then commit; never reversed.

What happens when something fails (docs/projector.md has the whole argument):

- the store is unreachable: the batch waits and is retried with backoff;
  nothing is committed meanwhile and /readyz says why;
- the store refuses an item's write for another reason (a validator, a key
  too large): the batch is bisected by item, every other item is stored, and
  the refused item is *parked*: its records wait in the store, in order, with
  their log positions (projector/parking.py), so the offsets are committed and
  every other item on every partition goes on; later records of the item are
  parked behind them; retried with growing backoff or at once after
  `projector release ITEM`; /readyz, the logs and metrics name the item. A
  record is never skipped. (A loop built without a parking lot holds the
  record's partition instead, as before issue 16);
- a record cannot be decoded: it goes to the dead-letter topic (retried until
  the broker acknowledges) before its offset is committed;
- an offset commit fails: the records come again and the guards skip them.

The pieces: projector/consumer.py (Kafka side), dead_letters.py, isolation.py
(finding a refused record), holds.py, health.py (/readyz), observation.py
(metrics, logs, progress); the collaborators' protocols are in ports.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from domain.planning import BatchPlan, CommandRecord
from projector import metrics
from projector.consumer import ConsumerLag, decode_batch
from projector.dead_letters import DeadLetterUnavailable
from projector.health import Health
from projector.holds import HOLD_FIRST_RETRY_SECONDS, PartitionHold
from projector.isolation import StoredBatch, apply_or_isolate, apply_or_park
from projector.observation import Progress, log_outcomes, record_metrics
from projector.parked_items import ParkedItems
from projector.parking import ParkingLot
from projector.ports import BatchGate, CommandConsumer, DeadLetterSink, Projection
from projector.settings import ProjectorSettings
from schemas.codec import CommandCodec
from servicekit.backoff import Backoff, RetryStopped, retry
from servicekit.store_errors import StoreRejected, StoreUnavailable

log = logging.getLogger("projector.run")


class ProjectorLoop:
    def __init__(
        self,
        settings: ProjectorSettings,
        projection: Projection,
        consumer: CommandConsumer,
        dead_letters: DeadLetterSink,
        health: Health,
        stop: threading.Event,
        gate: BatchGate,
        lag: ConsumerLag | None = None,
        parking: ParkingLot | None = None,
    ) -> None:
        self.settings = settings
        self.projection = projection
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.health = health
        self.stop = stop
        self.gate = gate
        self.codec = CommandCodec()
        self.topic = settings.commands_topic
        self.lag = lag or ConsumerLag(self.topic, health)
        self.holds: dict[int, PartitionHold] = {}
        self.parked = (
            ParkedItems(
                parking,
                settings,
                projection,
                health,
                stop,
                lambda: self.lag.refresh_while_waiting(self.consumer),
            )
            if parking is not None
            else None
        )
        self._last_store_check = 0.0
        self.progress = Progress()
        self.health.store_stall_seconds = max(2 * settings.mongodb_timeout_ms / 1000, 3.0)

    # -- the loop ------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._wait_for_store()
        try:
            while not self.stop.is_set():
                self.gate.before_batch()
                if self.stop.is_set():
                    break
                messages = self._take()
                retrying = self._due_holds()
                fresh = self._divert_held([m for m in messages if not self._is_error(m)])
                batch = [m for hold in retrying.values() for m in hold.messages] + fresh
                if batch:
                    if not self._process(batch, retrying):
                        break  # stopping while the batch waited: commit nothing more
                else:
                    self._probe_idle_store()
                if self.parked is not None:
                    self.parked.tend()
        finally:
            log.info("closing consumer (leaves the group, uncommitted records are redelivered)")
            self.consumer.close()
            self.gate.leave()

    def _take(self) -> list[Message]:
        """Wait (up to the poll timeout) for the first record, then take what is already here.

        ``consume(batch_size, timeout)`` alone returns at a low rate only when the
        timeout runs out (0.2 s for one command); here a record is handed on as
        soon as it arrives, and under load the batch still fills from what the
        consumer has already fetched (the second call does not wait).
        """
        first = self.consumer.consume(1, self.settings.poll_timeout_seconds)
        if not first or self.settings.batch_size <= 1:
            return first
        return first + self.consumer.consume(self.settings.batch_size - 1, 0)

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
        if stored.parked and self.parked and not self.parked.park(stored.parked, batch):
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

        def unreachable(exc: Exception, delay: float) -> None:
            self._store_is(False, str(exc))
            metrics.STORE_RETRIES.inc()
            self.lag.refresh_while_waiting(self.consumer)
            log.error(
                "store unreachable; batch held, nothing committed; retrying",
                extra={"retryInSeconds": delay, "records": len(records), "error": str(exc)},
            )

        def apply() -> StoredBatch:
            if self.parked is None:
                return apply_or_isolate(self.projection, records)
            return apply_or_park(
                self.projection,
                records,
                self.parked.ids(),
                on_step=lambda: self.lag.refresh_while_waiting(self.consumer),
            )

        try:
            stored = retry(
                apply,
                retry_on=(StoreUnavailable,),
                backoff=Backoff(0.1, self.settings.store_retry_max_seconds),
                stop=self.stop,
                on_failure=unreachable,
            )
        except RetryStopped:
            return None
        self._store_is(True)
        return stored

    def _store_is(self, ok: bool, error: str | None = None) -> None:
        self.health.store_ok = ok
        self.health.last_error = error
        self._last_store_check = time.monotonic()
        metrics.STORE_UP.set(1 if ok else 0)

    def _wait_for_store(self) -> None:
        def ready() -> None:
            self.projection.ping()
            self.projection.ensure_indexes()

        def not_usable(exc: Exception, _delay: float) -> None:
            self._store_is(False, str(exc))
            log.error("store not usable at start-up; waiting", extra={"error": str(exc)})

        if self.stop.is_set():
            return
        with contextlib.suppress(RetryStopped):
            retry(
                ready,
                retry_on=(StoreUnavailable, StoreRejected),
                backoff=Backoff(0.1, self.settings.store_retry_max_seconds),
                stop=self.stop,
                on_failure=not_usable,
            )
            self._store_is(True)

    def _probe_idle_store(self) -> None:
        """With nothing to apply, still notice (and report) a store that went away."""
        if time.monotonic() - self._last_store_check < self.settings.idle_probe_seconds:
            return
        try:
            self.projection.ping()
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
        delay = Backoff(HOLD_FIRST_RETRY_SECONDS, self.settings.hold_retry_max_seconds).delay(
            attempts
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

        def not_taken(exc: Exception, delay: float) -> None:
            metrics.DLQ_FAILURES.inc()
            self.lag.refresh_while_waiting(self.consumer)
            self.health.dead_letter_error = str(exc)
            log.error(
                "dead-letter topic did not take the records; batch held, nothing committed; "
                "retrying (copies already written may appear twice in the DLQ)",
                extra={"retryInSeconds": delay, "error": str(exc)},
            )

        try:
            retry(
                lambda: self.dead_letters.send(bad),
                retry_on=(DeadLetterUnavailable,),
                backoff=Backoff(0.5, self.settings.store_retry_max_seconds),
                stop=self.stop,
                on_failure=not_taken,
            )
        except RetryStopped:
            return False
        self.health.dead_letter_error = None
        metrics.DEAD_LETTERED.inc(len(bad))
        return True

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

    def _on_assign(self, consumer: CommandConsumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            # librdkafka keeps a partition paused across a reassignment; holds were dropped
            # on revoke, so every partition starts afresh from its committed offset
            consumer.assign(partitions)
            consumer.resume(partitions)
        self.health.kafka_ok = True
        self.health.assignment = sorted(p.partition for p in partitions)
        if self.parked is not None:
            self.parked.forget_assignment()
        log.info("partitions assigned", extra={"partitions": self.health.assignment})

    def _on_lost(self, _consumer: CommandConsumer, partitions: list[TopicPartition]) -> None:
        """The group dropped this consumer (session timed out, coordinator gone).

        Unlike a rebalance, nobody handed the partitions over: until the consumer has
        rejoined, /readyz says so (503) instead of reporting a projector that
        applies nothing as ready.
        """
        log.warning(
            "partitions lost: the consumer group dropped this projector (session timed out "
            "or the group coordinator was unreachable); nothing committed is lost, "
            "rejoining and resuming from the committed offsets",
            extra={"partitions": sorted(p.partition for p in partitions)},
        )
        self._forget(partitions)
        self.health.kafka_ok = False

    def _on_revoke(self, _consumer: CommandConsumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "partitions revoked", extra={"partitions": sorted(p.partition for p in partitions)}
        )
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        revoked = sorted(p.partition for p in partitions)
        for p in revoked:
            # a held partition's waiting records are dropped: its next owner starts at the
            # committed offset, which is the refused record
            self.holds.pop(p, None)
        self.lag.forget(revoked)
        self._publish_holds()
        self.health.assignment = []
