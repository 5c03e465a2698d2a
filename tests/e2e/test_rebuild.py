"""`projector rebuild` against the real broker, store and processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from domain.commands import CommandEnvelope, CreateActionItem
from schemas.codec import CommandCodec
from servicekit.read_model import active_generation
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem, Stack
from tests.support.auth import caller_headers
from tests.support.rebuild_oracle import (
    expected_model,
    read_log,
    send_mixed_commands,
    snapshot,
    wait_until_projected,
)


def run_rebuild(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "projector.cli", "rebuild", "--output", "json", *args],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def result_of(run: subprocess.CompletedProcess[str], progress: bool = True) -> dict[str, Any]:
    assert run.returncode == 0, f"rebuild failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert any(e["event"] == "progress" for e in events) == progress
    (result,) = [e for e in events if e["event"] == "result"]
    return result


def settle(system: RunningSystem, mongo: StoreClient) -> dict[str, dict[str, Any]]:
    """Wait until the projector has the whole log; check the live model against the oracle."""
    stack = system.stack
    db = mongo[stack.settings.mongodb_database]
    bootstrap = stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    wait_until_projected(db, bootstrap, stack.settings.commands_topic)
    live = snapshot(db)
    assert live == expected_model(read_log(bootstrap, stack.settings.commands_topic))
    return live


def test_rebuilt_model_is_identical_to_the_live_one(
    system: RunningSystem, mongo: StoreClient
) -> None:
    send_mixed_commands(system.command_url, items=60, updates=240)
    live = settle(system, mongo)
    statuses = [c["status"] for c in live["commands"].values()]
    codes = {c["exception"]["code"] for c in live["commands"].values() if c["exception"]}
    assert statuses.count("applied") > 100
    assert {"NOT_FOUND", "VERSION_CONFLICT"} <= codes  # the comparison covers exceptions too
    assert any(item["exceptions"] for item in live["items"].values())

    db = mongo[system.stack.settings.mongodb_database]
    before = active_generation(db)
    result = result_of(run_rebuild(system.stack))
    assert result["swapped"] is True
    assert result["previousGeneration"] == before
    assert active_generation(db) == result["generation"] != before
    assert snapshot(db) == live


def test_rebuild_while_writers_write_and_readers_read(
    system: RunningSystem, mongo: StoreClient
) -> None:
    send_mixed_commands(system.command_url, items=40, updates=80, seed=11)
    live = settle(system, mongo)
    probe_id = next(iter(live["items"]))
    stop = threading.Event()
    reads: list[int] = []
    accepted: list[str] = []

    def reader() -> None:
        with httpx.Client(
            headers=caller_headers("anonymous"), base_url=system.query_url, timeout=10
        ) as client:
            while not stop.is_set():
                reads.append(client.get(f"/action-items/{probe_id}").status_code)
                time.sleep(0.01)

    def writer() -> None:
        accepted.extend(send_mixed_commands(system.command_url, items=250, updates=750, seed=12))

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # the rebuild starts while the writer is busy
        result = result_of(run_rebuild(system.stack))
    finally:
        threads[1].join(300)
        stop.set()
        threads[0].join(30)
    assert result["swapped"] is True
    assert len(accepted) == 1000  # 250 creates + 750 updates, all answered 202
    assert reads and set(reads) == {200}, f"reads during the rebuild: {sorted(set(reads))}"
    after = settle(system, mongo)  # equals the oracle: nothing missing, nothing doubled
    assert set(accepted) <= set(after["commands"])


def test_rebuild_after_real_log_compaction_is_identical(
    system: RunningSystem, mongo: StoreClient, kafka_bootstrap: str
) -> None:
    topic = system.stack.settings.commands_topic
    send_mixed_commands(system.command_url, items=30, updates=60, seed=21)
    # re-sent copies, as a writer's retry produces them: the same record again, before any
    # later command of its item (here: copies of each chosen item's latest command)
    records = read_log(kafka_bootstrap, topic)
    codec = CommandCodec()
    latest = {codec.decode(value).action_item_id: (p, key, value) for p, _o, key, value in records}
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for partition, key, value in random.Random(3).sample(sorted(latest.values()), 25):
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(10) == 0
    assert len(read_log(kafka_bootstrap, topic)) == len(records) + 25
    live = settle(system, mongo)

    # now make the cleaner run for real
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    configs = {
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "100",
    }
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(30)
    # the active segment is never cleaned: roll it with more writes after segment.ms
    deadline = time.monotonic() + 90
    while True:
        time.sleep(0.5)
        for partition in range(system.stack.settings.commands_partitions):
            roll = roll_command()
            producer.produce(
                topic, key=roll.command_id, value=codec.encode(roll), partition=partition
            )
        producer.flush(10)
        keys = [key for _p, _o, key, _v in read_log(kafka_bootstrap, topic)]
        if len(keys) == len(set(keys)):
            break
        assert time.monotonic() < deadline, "the log cleaner did not compact within 90 s"
    compacted = read_log(kafka_bootstrap, topic)
    gaps = {
        p: max(o for q, o, _k, _v in compacted if q == p)
        + 1
        - sum(1 for r in compacted if r[0] == p)
        for p in {r[0] for r in compacted}
    }
    assert sum(gaps.values()) >= 25, f"the cleaner removed too little: {gaps}"
    live = settle(system, mongo)  # now with the roll commands too
    db = mongo[system.stack.settings.mongodb_database]
    result_of(run_rebuild(system.stack))
    assert snapshot(db) == live


def roll_command() -> CommandEnvelope:
    """A real create (its own item): writes that roll the segments so the cleaner can run."""
    return CommandEnvelope(
        command_id=str(uuid.uuid4()),
        action_item_id=str(uuid.uuid4()),
        accepted_at=datetime.now(UTC).replace(microsecond=0),
        correlation_id="segment-roll",
        payload_hash="roll",
        payload=CreateActionItem(title="segment roll"),
    )


def test_dry_run_and_forensic_side_generation(system: RunningSystem, mongo: StoreClient) -> None:
    send_mixed_commands(system.command_url, items=20, updates=20, seed=31)
    settle(system, mongo)
    db = mongo[system.stack.settings.mongodb_database]
    active = active_generation(db)

    dry = result_of(run_rebuild(system.stack, "--dry-run"), progress=False)
    assert dry["generation"] is None and dry["records"] == 40 and dry["estimateSeconds"] is not None
    assert active_generation(db) == active

    records = read_log(
        system.stack.env["KAFKA_BOOTSTRAP_SERVERS"], system.stack.settings.commands_topic
    )
    cut = {p: 0 for p in range(system.stack.settings.commands_partitions)}
    cut.update({p: o for p, o, _k, _v in records[: len(records) // 2]})
    until = ",".join(f"{p}:{o}" for p, o in sorted(cut.items()))
    side = result_of(run_rebuild(system.stack, "--into", "forensics1", "--until-offset", until))
    assert side["swapped"] is False and side["generation"] == "forensics1"
    assert active_generation(db) == active
    expected = expected_model([r for r in records if r[1] < cut.get(r[0], 0)])
    assert snapshot(db, "forensics1") == expected


def test_failure_leaves_the_live_model_and_cleans_up(
    system: RunningSystem, mongo: StoreClient
) -> None:
    send_mixed_commands(system.command_url, items=10, updates=10, seed=41)
    settle(system, mongo)
    db = mongo[system.stack.settings.mongodb_database]
    active = active_generation(db)
    before = set(db.list_collection_names())
    env_topic = {**system.stack.env, "COMMANDS_TOPIC": "no-such-topic-" + uuid.uuid4().hex[:6]}
    run = subprocess.run(
        [sys.executable, "-m", "projector.cli", "rebuild", "--output", "plain"],
        env={**os.environ, **env_topic},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "rebuild failed (Kafka)" in run.stderr and "live read model is untouched" in run.stderr
    assert active_generation(db) == active
    assert set(db.list_collection_names()) == before

    usage = run_rebuild(system.stack, "--until-offset", "0:5")
    assert usage.returncode == 2 and "--into" in usage.stderr
