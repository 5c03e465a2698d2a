"""The command API's one producer: acks=all, idempotent, delivery reports bridged into asyncio.

A request awaits its own delivery report (no flush per request), so many
concurrent requests share librdkafka's batches. A background thread serves
``poll()``; reports are handed to the event loop with ``call_soon_threadsafe``.

Every librdkafka error becomes ``LogUnavailable`` here (the one boundary); the
HTTP layer turns it into a 503. Three guarantees the HTTP layer relies on:

- a request never waits longer than ``timeout_seconds`` for the log (partition
  lookup included), and it only gets a ``Delivered`` for a record the broker
  acknowledged with acks=all;
- after ``close()`` has started nothing more is produced: the check and the
  produce happen under one lock that ``close()`` also takes, so every record
  that was produced is flushed (and its request answered) before the producer
  goes away;
- a keyed command (same commandId) is produced at most once per process while
  an earlier attempt is pending or was acknowledged: a retry awaits or reuses
  that attempt instead of writing a second copy (the in-process memory).

Every produce call writes its record under a key of its own,
``<commandId>.<attemptId>`` (``schemas/record_key.py``): a copy that a retry
writes after all never shares a key with the first, so log compaction never
removes a command's first copy. And one produce call writes one record: records
never time out in librdkafka and one request is in flight per connection, so
the idempotent producer never bumps its epoch and resends a record the broker
may already have (``command_api/producer_settings.py``). A request answered 503 leaves its
record with librdkafka, which writes it when the log is back (a late ack).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from command_api import metrics
from schemas.record_key import record_key
from servicekit.logs import Throttle

log = logging.getLogger("command_api.publisher")

# Delivery errors after which the record is certainly not on the log; for every
# other error (timeouts above all) the broker may have appended it.
_NOT_WRITTEN = frozenset(
    {
        KafkaError._PURGE_QUEUE,
        KafkaError._QUEUE_FULL,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.INVALID_RECORD,
    }
)


class LogUnavailable(Exception):
    """The log did not acknowledge; ``maybe_written`` when the broker may still have it."""

    def __init__(self, reason: str, *, maybe_written: bool, cause: str = "delivery") -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_written = maybe_written
        self.cause = cause  # a short, bounded label for metrics and logs


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int
    # True when a retry was answered from the in-process memory of an earlier attempt.
    replayed: bool = False


Pending = asyncio.Future[Delivered]


class CommandPublisher:
    def __init__(
        self,
        config: dict[str, object],
        topic: str,
        timeout_seconds: float,
        remember: int = 50_000,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self._config = config
        self.topic = topic
        self.timeout = timeout_seconds
        self._factory = producer_factory
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._running = False
        self._closed = False
        self._lock = threading.Lock()  # the closed-check and produce() vs close()
        self._fatal: KafkaError | None = None
        self._error_throttle = Throttle()
        self._partitions: int | None = None
        self._metadata_lock = asyncio.Lock()
        self._in_flight = 0
        # attempts whose request already answered 503 -> when it first did (loop clock):
        # an ack for one of them is a late ack. Bounded by the producer's queue (records never
        # time out in librdkafka; each entry leaves with its delivery report or at close).
        self._gave_up: dict[Pending, float] = {}
        self.late_acks = 0
        # commandId -> pending future or delivered position, for keyed retries in this process
        self._recent: OrderedDict[str, Pending | Delivered] = OrderedDict()
        self._remember = remember

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._producer = self._new_producer()
        self._running = True
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()
        try:
            self._partitions = self._read_partitions(timeout=min(self.timeout, 5.0))
        except LogUnavailable as exc:
            # Start anyway: /readyz says not ready and writes answer 503 until the log is back.
            log.warning("command log not reachable at start-up", extra={"reason": exc.reason})

    def _new_producer(self) -> Producer:
        return self._factory({**self._config, "error_cb": self._on_error})

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("fatal producer error; replacing the producer", extra={"error": str(err)})
        elif self._error_throttle.allow(str(err.code())):
            log.warning(
                "producer error (librdkafka keeps retrying; repeats muted for 30 s)",
                extra={"error": str(err)},
            )

    def _poll_forever(self) -> None:
        while self._running:
            producer = self._producer
            if producer is None:
                return
            try:
                producer.poll(0.1)
            except Exception:  # a callback failed; the poll thread must outlive it
                log.exception("error while serving producer callbacks")
            if self._fatal is not None:
                self._replace_fatal_producer()

    def _replace_fatal_producer(self) -> None:
        """An idempotent producer with a fatal error refuses everything: start a new one."""
        with self._lock:
            old = self._producer
            self._fatal = None
            if self._closed or old is None:
                return
            self._producer = self._new_producer()
        # Outstanding records of the old producer fail now (their requests answer 503).
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.flush(0)
        old.close()

    def close(self, flush_seconds: float) -> int:
        """Refuse new commands, wait for outstanding deliveries; returns how many did not finish.

        Records never time out in librdkafka, so while the log is down the flush
        waits the whole ``flush_seconds`` and what is left is dropped: every such
        request was answered 503 (none was answered 202); the ones still queued
        were never sent, the ones in flight may be on the log (``maybeWritten``).
        """
        with self._lock:
            self._closed = True
            producer = self._producer
        if producer is None:
            return 0
        # Every record produced before _closed was set is in librdkafka's queue now;
        # flush serves their delivery reports, so their requests get their real answer.
        remaining = int(producer.flush(flush_seconds))
        self._running = False
        if self._poller is not None:
            self._poller.join(2)
        if remaining:
            producer.purge(in_queue=True, in_flight=False, blocking=False)
            producer.poll(0)  # serve the purged records' reports
            in_flight = len(producer)
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.flush(0)
            log.error(
                "shutdown with records never acknowledged: dropped; their requests were "
                "answered 503, none 202; the queued ones were never sent, the ones in flight "
                "may be on the log (a retry with the same Idempotency-Key is safe)",
                extra={
                    "dropped": remaining,
                    "droppedQueued": max(0, remaining - in_flight),
                    "droppedInFlight": min(in_flight, remaining),
                },
            )
        producer.close()
        log.info("producer flushed and closed", extra={"outstanding": remaining})
        return remaining

    @property
    def config(self) -> dict[str, object]:
        """The librdkafka settings (without callbacks), for operators and tests."""
        return dict(self._config)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- metadata ----------------------------------------------------------
    @property
    def partition_count(self) -> int | None:
        """The topic's partition count once known (cached; the bootstrap refuses to change it)."""
        return self._partitions

    async def load_partition_count(self, deadline: float) -> int:
        """Look the partition count up without blocking the event loop, by ``deadline``.

        ``deadline`` is on the event loop's clock. One lookup runs at a time, so a
        burst of requests while the broker is down does not pile up threads.
        """
        if self._partitions is not None:
            return self._partitions
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                async with self._metadata_lock:
                    if self._partitions is None:
                        budget = max(0.1, deadline - loop.time())
                        self._partitions = await asyncio.to_thread(self._read_partitions, budget)
        except TimeoutError:
            raise LogUnavailable(
                "no partition metadata for the command topic within the bound",
                maybe_written=False,
                cause="metadata",
            ) from None
        return self._partitions

    def _read_partitions(self, timeout: float) -> int:
        producer = self._producer
        if producer is None:
            raise LogUnavailable("producer not started", maybe_written=False, cause="metadata")
        try:
            metadata = producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            raise LogUnavailable(
                f"broker unreachable: {exc.args[0]}", maybe_written=False, cause="metadata"
            ) from exc
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise LogUnavailable(
                f"topic {self.topic} not available: {getattr(topic, 'error', None) or 'missing'}",
                maybe_written=False,
                cause="metadata",
            )
        return len(topic.partitions)

    def check(self, timeout: float = 2.0) -> None:
        """Raise LogUnavailable unless the broker answers metadata for the topic."""
        if self._closed:
            raise LogUnavailable("shutting down", maybe_written=False, cause="shutdown")
        self._read_partitions(timeout)

    # -- publishing --------------------------------------------------------
    async def publish(
        self,
        command_id: str,
        value: bytes,
        partition: int,
        headers: list[tuple[str, str | bytes | None]],
        dedupe: bool,
        deadline: float | None = None,
    ) -> Delivered:
        """Produce one record of ``command_id`` and await its acks=all acknowledgement.

        The record's key is new for this call (``record_key``); ``dedupe`` looks
        earlier attempts up by ``command_id``. ``deadline`` is on the event
        loop's clock (default: now + the timeout).

        Longer than 60 lines on purpose: the remembered attempt, the produce call
        under the lock and the delivery callback share one future and one key,
        and are safe only read together.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.timeout
        if dedupe:
            earlier = self._recent.get(command_id)
            if isinstance(earlier, Delivered):
                return replace(earlier, replayed=True)
            if earlier is not None and not earlier.done():
                return replace(await self._await(earlier, deadline), replayed=True)
        future: Pending = loop.create_future()
        key = record_key(command_id).encode()  # this attempt's own key

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            try:
                loop.call_soon_threadsafe(self._resolve, command_id, future, err, msg)
            except RuntimeError:  # the loop is gone: nobody is waiting for this answer
                log.warning(
                    "delivery report after the event loop closed", extra={"commandId": command_id}
                )

        with self._lock:
            if self._closed or self._producer is None:
                raise LogUnavailable(
                    "the command API is shutting down", maybe_written=False, cause="shutdown"
                )
            try:
                self._producer.produce(
                    self.topic,
                    key=key,
                    value=value,
                    partition=partition,
                    headers=headers,
                    on_delivery=on_delivery,
                )
            except BufferError as exc:
                raise LogUnavailable(
                    "producer queue full", maybe_written=False, cause="queue_full"
                ) from exc
            except KafkaException as exc:
                raise LogUnavailable(
                    str(exc.args[0]), maybe_written=False, cause="produce"
                ) from exc
        self._in_flight += 1
        metrics.IN_FLIGHT.inc()
        if dedupe:
            self._remember_entry(command_id, future)
        return await self._await(future, deadline)

    async def _await(self, future: Pending, deadline: float) -> Delivered:
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            return await asyncio.wait_for(asyncio.shield(future), remaining)
        except TimeoutError:
            if not future.done():
                self._gave_up.setdefault(future, asyncio.get_running_loop().time())
                metrics.PENDING_AFTER_503.set(len(self._gave_up))
            raise LogUnavailable(
                f"no acknowledgement from the log within {self.timeout:g} s",
                maybe_written=True,
                cause="timeout",
            ) from None

    def _resolve(
        self, command_id: str, future: Pending, err: KafkaError | None, msg: Message
    ) -> None:
        self._in_flight -= 1
        metrics.IN_FLIGHT.dec()
        answered_at = self._gave_up.pop(future, None)
        answered_503 = answered_at is not None
        if answered_503:
            metrics.PENDING_AFTER_503.set(len(self._gave_up))
        if err is not None:
            if self._recent.get(command_id) is future:
                del self._recent[command_id]
            if not future.done():
                maybe = err.code() not in _NOT_WRITTEN
                future.set_exception(LogUnavailable(str(err), maybe_written=maybe))
            future.exception()  # mark retrieved: the request may have answered 503 already
            log.warning(
                "delivery failed",
                extra={"commandId": command_id, "error": str(err), "code": err.code()},
            )
            return
        delivered = Delivered(int(msg.partition() or 0), int(msg.offset() or 0))
        if command_id in self._recent:
            self._recent[command_id] = delivered
        if answered_503:
            self.late_acks += 1
            metrics.LATE_ACKS.inc()
            log.warning(
                "late acknowledgement: a command answered 503 is on the log after all; "
                "a retry with its Idempotency-Key is answered from memory or deduplicated "
                "by the projector",
                extra={
                    "commandId": command_id,
                    "partition": delivered.partition,
                    "offset": delivered.offset,
                    "secondsAfter503": round(
                        asyncio.get_running_loop().time() - (answered_at or 0.0), 3
                    ),
                },
            )
        if not future.done():
            future.set_result(delivered)

    def _remember_entry(self, command_id: str, value: Pending | Delivered) -> None:
        self._recent[command_id] = value
        self._recent.move_to_end(command_id)
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
