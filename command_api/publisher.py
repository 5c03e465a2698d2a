"""The command API's one producer: acks=all, idempotent, delivery reports bridged into asyncio.

A request awaits its own delivery report (no flush per request), so many
concurrent requests share librdkafka's batches. A background thread serves
``poll()``; reports are handed to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

log = logging.getLogger("command_api.publisher")


class LogUnavailable(Exception):
    """The log did not acknowledge; ``maybe_written`` when the broker may still have it."""

    def __init__(self, reason: str, *, maybe_written: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_written = maybe_written


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int


def producer_config(bootstrap: str, delivery_timeout_ms: int, linger_ms: int) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        # librdkafka gives up near the moment the client is told 503, which keeps
        # "written after all" rare; a retry with the same Idempotency-Key stays safe anyway.
        "message.timeout.ms": delivery_timeout_ms,
        "compression.type": "none",
    }


class CommandPublisher:
    def __init__(
        self,
        config: dict[str, object],
        topic: str,
        timeout_seconds: float,
        remember: int = 50_000,
    ) -> None:
        self._config = config
        self.topic = topic
        self.timeout = timeout_seconds
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._running = False
        self._closed = False
        self._partitions: int | None = None
        # commandId -> pending future or delivered position, for keyed retries in this process
        self._recent: OrderedDict[str, asyncio.Future[Delivered] | Delivered] = OrderedDict()
        self._remember = remember

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._producer = Producer(self._config)
        self._running = True
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self) -> None:
        assert self._producer is not None
        while self._running:
            self._producer.poll(0.1)

    def close(self, flush_seconds: float) -> int:
        """Refuse new commands, wait for outstanding deliveries; returns how many did not finish."""
        self._closed = True
        if self._producer is None:
            return 0
        remaining = self._producer.flush(flush_seconds)
        self._running = False
        if self._poller is not None:
            self._poller.join(2)
        if remaining:
            log.error(
                "shutdown with deliveries outstanding; their requests were not answered 202",
                extra={"outstanding": remaining},
            )
        return int(remaining)

    # -- metadata ----------------------------------------------------------
    def partitions(self) -> int:
        """The topic's partition count (cached; the bootstrap refuses to change it)."""
        if self._partitions is None:
            self._partitions = self._read_partitions(timeout=5)
        return self._partitions

    def _read_partitions(self, timeout: float) -> int:
        if self._producer is None:
            raise LogUnavailable("producer not started", maybe_written=False)
        try:
            metadata = self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            raise LogUnavailable(f"broker unreachable: {exc}", maybe_written=False) from exc
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise LogUnavailable(
                f"topic {self.topic} not available: {getattr(topic, 'error', 'missing')}",
                maybe_written=False,
            )
        return len(topic.partitions)

    def check(self, timeout: float = 2.0) -> None:
        """Raise LogUnavailable unless the broker answers metadata for the topic."""
        self._read_partitions(timeout)

    # -- publishing --------------------------------------------------------
    async def publish(
        self,
        key: str,
        value: bytes,
        partition: int,
        headers: list[tuple[str, str | bytes | None]],
        dedupe: bool,
    ) -> Delivered:
        if self._closed or self._producer is None:
            raise LogUnavailable("command API is shutting down", maybe_written=False)
        if dedupe:
            earlier = self._recent.get(key)
            if isinstance(earlier, Delivered):
                return earlier
            if earlier is not None and not earlier.done():
                return await self._await(earlier)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(self._resolve, key, future, err, msg)

        try:
            self._producer.produce(
                self.topic,
                key=key.encode(),
                value=value,
                partition=partition,
                headers=headers,
                on_delivery=on_delivery,
            )
        except BufferError as exc:
            raise LogUnavailable("producer queue full", maybe_written=False) from exc
        except KafkaException as exc:
            raise LogUnavailable(str(exc), maybe_written=False) from exc
        if dedupe:
            self._remember_entry(key, future)
        return await self._await(future)

    async def _await(self, future: asyncio.Future[Delivered]) -> Delivered:
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise LogUnavailable(
                f"no acknowledgement from the log within {self.timeout:g} s", maybe_written=True
            ) from None

    def _resolve(
        self, key: str, future: asyncio.Future[Delivered], err: KafkaError | None, msg: Message
    ) -> None:
        if err is not None:
            if key in self._recent and self._recent[key] is future:
                del self._recent[key]
            if not future.done():
                maybe = err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT)
                future.set_exception(LogUnavailable(str(err), maybe_written=maybe))
            future.exception()  # mark retrieved: the request may have answered 503 already
            return
        delivered = Delivered(int(msg.partition() or 0), int(msg.offset() or 0))
        if key in self._recent:
            self._recent[key] = delivered
        if not future.done():
            future.set_result(delivered)

    def _remember_entry(self, key: str, value: asyncio.Future[Delivered] | Delivered) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
