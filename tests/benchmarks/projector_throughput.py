"""Apply rate of `projector run` over a pre-filled topic: prints commands/s, asserts nothing.

    python -m tests.benchmarks.projector_throughput [--commands 100000] [--items 20000]
        [--partitions 6] [--batch-size 1000] [--process] [--log-level INFO] [--no-verify]

It creates a fresh topic and database on the real Kafka and store
(KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, defaults localhost), produces the
commands straight onto the log with the codec (creates and updates over the
items, about 5% built to be rejected, 1% re-sent copies), then starts the
projector and measures from the first batch applied to the last. With
--process it runs `python -m projector.cli run` (timed by polling the stored
positions every 20 ms); by default the real loop runs on a thread of this
process (timed around the store calls). It then checks the read model against
the domain folded over the log, and drops the topic and database.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from infra.topics import ensure_topics, topic_specs
from projector.settings import ProjectorSettings
from servicekit.logs import JsonFormatter
from tests.support.projector_log import CommandMix, high_watermarks, produce_commands, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import (
    caught_up,
    positions,
    projector_in_thread,
    projector_process,
    wait_until,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--process", action="store_true", help="run `projector run` as a process")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the topic and database")
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        "MONGODB_URI": os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017"),
        "MONGODB_DATABASE": f"bench_{suffix}",
        "COMMANDS_TOPIC": f"bench-{suffix}.commands",
        "DLQ_TOPIC": f"bench-{suffix}.commands.dlq",
        "COMMANDS_PARTITIONS": str(args.partitions),
        "CONSUMER_GROUP": f"bench-{suffix}",
        "BATCH_SIZE": str(args.batch_size),
        "LOG_LEVEL": args.log_level,
    }
    settings = ProjectorSettings.model_validate({k.lower(): v for k, v in env.items()})
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    ensure_topics(admin, topic_specs(settings))
    mongo: MongoClient = MongoClient(settings.mongodb_uri)
    db = mongo[settings.mongodb_database]
    log_dir = Path(tempfile.mkdtemp(prefix="projector-bench-"))
    try:
        mix = CommandMix(args.items, seed=11, rejections=0.05, resend=0.01)
        started = time.perf_counter()
        produced = produce_commands(
            settings.kafka_bootstrap_servers,
            settings.commands_topic,
            args.partitions,
            (mix.next() for _ in range(args.commands)),
        )
        produce_s = time.perf_counter() - started
        print(
            f"produced {produced:,} commands in {produce_s:.1f} s ({produced / produce_s:,.0f}/s)"
        )
        ends = high_watermarks(
            settings.kafka_bootstrap_servers, settings.commands_topic, args.partitions
        )
        if args.process:
            first, last = run_process(env, db, ends, log_dir)
        else:
            first, last, batches = run_in_thread(settings, db, ends, log_dir)
            print(
                f"batches: {len(batches)}, store time per batch: "
                f"p50 {statistics.median(batches) * 1000:.0f} ms, max {max(batches) * 1000:.0f} ms"
            )
        seconds = last - first
        print(
            f"applied {produced:,} commands ({args.items:,} items, {args.partitions} partitions, "
            f"batch size {args.batch_size}, {'process' if args.process else 'in-process'}) "
            f"in {seconds:.2f} s: {produced / seconds:,.0f} commands/s"
        )
        if not args.no_verify:
            expected = fold_log(
                read_log(settings.kafka_bootstrap_servers, settings.commands_topic, args.partitions)
            )
            problems = differences(expected, read_stored(db))
            print(
                "read model equals the domain folded over the log"
                if not problems
                else "\n".join(problems)
            )
            print(f"outcomes: {expected.codes()}, re-sent copies: {expected.resent_copies}")
        print(f"logs in {log_dir}")
    finally:
        if not args.keep:
            admin.delete_topics([settings.commands_topic, settings.dlq_topic])
            mongo.drop_database(settings.mongodb_database)
        mongo.close()


def run_in_thread(
    settings: ProjectorSettings, db, ends: dict[int, int], log_dir: Path
) -> tuple[float, float, list[float]]:
    handler = logging.FileHandler(log_dir / "projector.log")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    calls: list[tuple[float, float]] = []
    lock = threading.Lock()
    with projector_in_thread(settings) as running:
        store = running.projector.loop.store
        apply = store.apply

        def timed(records: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return apply(records)
            finally:
                with lock:
                    calls.append((t0, time.perf_counter()))

        store.apply = timed  # type: ignore[method-assign]
        wait_until(lambda: caught_up(db, ends), 1800, "the projector to reach the end", 0.02)
    return calls[0][0], calls[-1][1], [b - a for a, b in calls]


def run_process(
    env: dict[str, str], db, ends: dict[int, int], log_dir: Path
) -> tuple[float, float]:
    proc = projector_process(env, log_dir).start(timeout=60)
    try:
        first = wait_until(
            lambda: sum(positions(db).values()) and time.perf_counter(), 120, "a first batch", 0.02
        )
        last = wait_until(
            lambda: caught_up(db, ends) and time.perf_counter(), 1800, "the end", 0.02
        )
        return float(first), float(last)
    finally:
        proc.stop()


if __name__ == "__main__":
    main()
