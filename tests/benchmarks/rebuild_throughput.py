"""Rebuild throughput: pre-fill a fresh topic with N commands, then `projector rebuild` it.

    python -m tests.benchmarks.rebuild_throughput --commands 100000 --items 20000

Uses KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI (defaults: the local stack from `make up`),
its own topic and database, and removes both at the end. Prints records/s.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from domain.commands import CommandEnvelope, CreateActionItem, Priority, Status, UpdateActionItem
from infra.topics import ensure_topics, topic_specs
from projector.log_reader import LogReader
from projector.rebuild import Rebuild, RebuildOptions
from projector.rebuild_cli import LineProgress
from schemas.codec import CommandCodec
from schemas.partitioning import partition_for
from servicekit.settings import CommonSettings

STATUSES = [Status.IN_PROGRESS, Status.DONE, Status.OPEN]


def commands(total: int, items: int):
    """Creates for `items` items, then updates round-robin over them (titles and statuses)."""
    ids = [str(uuid.uuid4()) for _ in range(items)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(total):
        at = t0 + timedelta(milliseconds=n)
        if n < items:
            payload: CreateActionItem | UpdateActionItem = CreateActionItem(
                title=f"item {n}", priority=Priority.NORMAL, tags=("bench",)
            )
            item = ids[n]
        else:
            item = ids[n % items]
            if n % 3 == 0:
                payload = UpdateActionItem(frozenset({"status"}), status=STATUSES[(n // items) % 3])
            else:
                payload = UpdateActionItem(frozenset({"title"}), title=f"title {n}")
        yield CommandEnvelope(
            command_id=str(uuid.uuid4()),
            action_item_id=item,
            accepted_at=at,
            correlation_id="bench",
            payload_hash=str(n),
            payload=payload,
        )


def fill(settings: CommonSettings, total: int, items: int) -> float:
    codec = CommandCodec()
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
        }
    )
    started = time.perf_counter()
    for command in commands(total, items):
        value = codec.encode(command)
        partition = partition_for(command.action_item_id, settings.commands_partitions)
        while True:
            try:
                producer.produce(
                    settings.commands_topic,
                    key=command.command_id,
                    value=value,
                    partition=partition,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("not every record was acknowledged")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    settings = CommonSettings(
        commands_topic=f"bench-{suffix}.commands",
        dlq_topic=f"bench-{suffix}.dlq",
        mongodb_database=f"bench_{suffix}",
    )
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    ensure_topics(admin, topic_specs(settings))
    client: MongoClient = MongoClient(settings.mongodb_uri)
    try:
        seconds = fill(settings, args.commands, args.items)
        rate = args.commands / seconds
        print(f"filled {args.commands:,} commands in {seconds:.1f} s ({rate:,.0f}/s)")
        reader = LogReader(settings.kafka_bootstrap_servers, settings.commands_topic)
        job = Rebuild(
            client,
            settings.mongodb_database,
            reader,
            LineProgress(as_json=False),
            threading.Event(),
            RebuildOptions(batch_size=args.batch_size),
        )
        result = job.run()
        reader.close()
        print(
            f"REBUILD {result.applied_records:,} commands over {args.items:,} items in "
            f"{result.seconds:.1f} s = {result.rate:,.0f} commands/s "
            f"(partitions {settings.commands_partitions}, batch {args.batch_size})"
        )
    finally:
        client.drop_database(settings.mongodb_database)
        admin.delete_topics([settings.commands_topic, settings.dlq_topic])
        client.close()


if __name__ == "__main__":
    main()
