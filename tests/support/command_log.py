"""Reading the command log back in tests: every record with its key, headers and position."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from tests.support.log_record import LogRecord


def read_records(bootstrap: str, topic: str, timeout: float = 30) -> list[LogRecord]:
    """Every record on the topic now (up to the high watermarks), in per-partition order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"command-log-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        ends: dict[int, int] = {}
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        records: list[LogRecord] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end within {timeout} s")
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                p, o = int(msg.partition() or 0), int(msg.offset() or 0)
                records.append(LogRecord(p, o, msg.key(), msg.value(), _headers(msg.headers())))
                if o + 1 >= ends[p]:
                    done.add(p)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def _headers(raw: object) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for pair in raw if isinstance(raw, list) else []:
        name, value = pair
        out[str(name)] = value if isinstance(value, bytes) else str(value or "").encode()
    return out


def wait_for_records(
    bootstrap: str,
    topic: str,
    ready: Callable[[list[LogRecord]], bool],
    timeout: float = 30,
) -> list[LogRecord]:
    """Read the log until ``ready(records)`` holds, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(bootstrap, topic, timeout=max(1.0, deadline - time.monotonic()))
        if ready(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def by_command(records: list[LogRecord]) -> dict[str, list[LogRecord]]:
    """commandId -> its copies on the log, in log order (every record has a key of its own)."""
    out: dict[str, list[LogRecord]] = {}
    for record in records:
        command_id = record.command_id
        if command_id is not None:
            out.setdefault(command_id, []).append(record)
    return out
