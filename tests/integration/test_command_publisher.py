"""The command API's publisher against the real broker: bounds, dedupe memory, close."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from command_api.producer_settings import producer_config
from command_api.publisher import CommandPublisher, Delivered, LogUnavailable
from tests.support.command_api import own_topics
from tests.support.command_log import by_command, read_records
from tests.support.waiting import wait_until


@pytest.fixture
def topic(kafka_bootstrap: str) -> Iterator[str]:
    with own_topics(kafka_bootstrap) as (settings, _):
        yield settings.commands_topic


def publisher(
    bootstrap: str, topic: str, timeout: float = 5.0, queue_max_messages: int = 20_000
) -> CommandPublisher:
    config = producer_config(bootstrap, 5, queue_max_messages=queue_max_messages)
    return CommandPublisher(config, topic, timeout)


def test_records_are_acknowledged_with_their_position(kafka_bootstrap: str, topic: str) -> None:
    pub = publisher(kafka_bootstrap, topic)
    pub.start()
    assert pub.partition_count == 3

    async def run() -> list[Delivered]:
        return list(
            await asyncio.gather(
                *(pub.publish(f"k{i}", f"v{i}".encode(), i % 3, [], False) for i in range(50))
            )
        )

    try:
        delivered = asyncio.run(run())
    finally:
        pub.close(10)
    records = {r.command_id: r for r in read_records(kafka_bootstrap, topic)}
    assert len(records) == 50
    for i, answer in enumerate(delivered):
        assert (records[f"k{i}"].partition, records[f"k{i}"].offset) == (
            answer.partition,
            answer.offset,
        )
        assert records[f"k{i}"].value == f"v{i}".encode()


def test_every_produce_call_writes_a_key_of_its_own(kafka_bootstrap: str, topic: str) -> None:
    """Two attempts of one command (a retry this process does not remember) are two keys,
    so compaction keeps both and the first copy is never removed (issue 20)."""
    pub = publisher(kafka_bootstrap, topic)
    pub.start()
    command_id = str(uuid.uuid4())

    async def run() -> list[Delivered]:
        return [await pub.publish(command_id, b"v", 1, [], False) for _ in range(2)]

    try:
        first, second = asyncio.run(run())
    finally:
        pub.close(10)
    copies = by_command(read_records(kafka_bootstrap, topic))[command_id]
    assert [(r.partition, r.offset) for r in copies] == [
        (first.partition, first.offset),
        (second.partition, second.offset),
    ]
    keys = [r.key_text for r in copies]
    assert len(set(keys)) == 2, f"two attempts share a record key: {keys}"
    for key in keys:
        assert key is not None
        prefix, _, attempt = key.partition(".")
        assert prefix == command_id and len(attempt) == 32


def test_a_keyed_retry_while_pending_or_after_ack_is_not_produced_again(
    kafka_bootstrap: str, topic: str
) -> None:
    pub = publisher(kafka_bootstrap, topic)
    pub.start()

    async def run() -> tuple[Delivered, Delivered, Delivered]:
        first, concurrent = await asyncio.gather(
            pub.publish("same", b"v", 1, [], True), pub.publish("same", b"v", 1, [], True)
        )
        later = await pub.publish("same", b"v", 1, [], True)
        return first, concurrent, later

    try:
        first, concurrent, later = asyncio.run(run())
    finally:
        pub.close(10)
    assert not first.replayed and concurrent.replayed and later.replayed
    assert {(d.partition, d.offset) for d in (first, concurrent, later)} == {
        (first.partition, first.offset)
    }
    assert len(by_command(read_records(kafka_bootstrap, topic))["same"]) == 1


def test_close_answers_everything_produced_and_refuses_the_rest(
    kafka_bootstrap: str, topic: str
) -> None:
    pub = publisher(kafka_bootstrap, topic)
    pub.start()
    outcomes: dict[str, Delivered | LogUnavailable] = {}

    async def keep_publishing(worker: int) -> None:
        for n in range(10_000):
            key = f"w{worker}-{n}"
            try:
                outcomes[key] = await pub.publish(key, b"v", n % 3, [], False)
            except LogUnavailable as exc:
                outcomes[key] = exc
                return

    async def run() -> int:
        workers = [asyncio.create_task(keep_publishing(w)) for w in range(20)]
        while len(outcomes) < 200:
            await asyncio.sleep(0.01)
        # close from another thread while the workers keep producing
        outstanding = await asyncio.to_thread(pub.close, 10)
        await asyncio.wait_for(asyncio.gather(*workers), 20)
        return outstanding

    assert asyncio.run(run()) == 0
    on_log = by_command(read_records(kafka_bootstrap, topic))
    refused = {k: v for k, v in outcomes.items() if isinstance(v, LogUnavailable)}
    assert len(refused) == 20  # every worker ends on a refusal
    for key, outcome in outcomes.items():
        if isinstance(outcome, Delivered):
            assert len(on_log[key]) == 1, f"{key} acknowledged but not on the log"
        else:
            assert outcome.cause == "shutdown" and not outcome.maybe_written
            assert key not in on_log, f"{key} refused but written"


def test_an_unreachable_log_is_a_bounded_failure() -> None:
    pub = publisher("127.0.0.1:1", "nowhere", timeout=1.0)
    started = time.monotonic()
    pub.start()  # does not fail: the API starts and reports not-ready
    assert pub.partition_count is None

    async def run() -> tuple[LogUnavailable, LogUnavailable]:
        loop = asyncio.get_running_loop()
        with pytest.raises(LogUnavailable) as metadata:
            await pub.load_partition_count(loop.time() + 1.0)
        with pytest.raises(LogUnavailable) as delivery:
            await pub.publish(str(uuid.uuid4()), b"v", 0, [], True)
        return metadata.value, delivery.value

    try:
        t0 = time.monotonic()
        metadata, delivery = asyncio.run(run())
        elapsed = time.monotonic() - t0
    finally:
        pub.close(2)
    assert metadata.cause == "metadata" and not metadata.maybe_written
    assert delivery.cause in ("timeout", "delivery")
    assert elapsed < 2 * 1.0 + 1.0, elapsed
    assert time.monotonic() - started < 10
    with pytest.raises(LogUnavailable):
        pub.check(timeout=0.5)


def test_a_full_producer_queue_is_an_immediate_not_written_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Records never time out in librdkafka (issue 20), so while the log is unreachable
    every 503'd record stays queued: the queue bound is the memory bound, a full queue
    refuses the next record at once, and a shutdown drops (and counts) what is left."""
    pub = publisher("127.0.0.1:1", "nowhere", timeout=0.5, queue_max_messages=3)
    pub.start()

    async def run() -> tuple[list[BaseException], LogUnavailable, int, int]:
        held = await asyncio.gather(
            *(pub.publish(f"held-{i}", b"v", 0, [], True) for i in range(3)),
            return_exceptions=True,
        )
        # a deadline far away: only the refusal, not the bound, can end this wait early
        deadline = asyncio.get_running_loop().time() + 300
        with pytest.raises(LogUnavailable) as full:
            await pub.publish("one-too-many", b"v", 0, [], True, deadline=deadline)
        pending = len(pub._gave_up)
        dropped = await asyncio.to_thread(pub.close, 0.5)
        await asyncio.sleep(0.1)  # the purged records' reports reach the loop
        return [h for h in held if isinstance(h, BaseException)], full.value, pending, dropped

    with caplog.at_level(logging.ERROR, logger="command_api.publisher"):
        held, full, pending_before_close, dropped = asyncio.run(run())
    assert len(held) == 3, held
    for attempt in held:
        assert isinstance(attempt, LogUnavailable), attempt
        assert attempt.cause == "timeout" and attempt.maybe_written
    assert full.cause == "queue_full" and not full.maybe_written
    assert pending_before_close == 3, "the 503'd records are not held for a late ack"
    assert dropped == 3
    assert pub._gave_up == {} and pub.in_flight == 0, "bookkeeping left after close"
    lines = [r for r in caplog.records if "records never acknowledged" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert (lines[0].dropped, lines[0].droppedQueued) == (3, 3)  # type: ignore[attr-defined]


def test_a_missing_topic_is_reported_not_waited_for(kafka_bootstrap: str) -> None:
    pub = publisher(kafka_bootstrap, f"missing-{uuid.uuid4().hex[:8]}", timeout=3.0)
    pub.start()
    try:
        with pytest.raises(LogUnavailable, match="not available"):
            pub.check(timeout=3.0)
    finally:
        pub.close(2)


def test_a_producer_with_a_fatal_error_is_replaced(kafka_bootstrap: str, topic: str) -> None:
    """The swap itself, on the real broker; the fatal error is injected through error_cb."""
    pub = publisher(kafka_bootstrap, topic)
    pub.start()
    first = pub._producer
    try:
        pub._on_error(KafkaError(KafkaError._FATAL, "injected", fatal=True))
        wait_until(lambda: pub._producer is not first, 5, "the producer replaced")
        delivered = asyncio.run(pub.publish("after-fatal", b"v", 2, [], False))
    finally:
        pub.close(10)
    assert delivered.partition == 2
    assert len(by_command(read_records(kafka_bootstrap, topic))["after-fatal"]) == 1
