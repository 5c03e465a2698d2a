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
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Producer

from domain.commands import CommandEnvelope, CreateActionItem
from schemas.codec import CommandCodec
from schemas.partitioning import partition_for
from schemas.record_key import COMMAND_ID_HEADER, record_key
from servicekit.read_model import active_generation
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem, Stack
from tests.support.auth import caller_headers
from tests.support.compaction import compact_now, compare_models
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
    """Re-sent copies as writers' retries leave them since issue 20 (the command drafted
    again, under a record key of its own, with later commands of its item in between) and
    copies written before it (key = commandId); then the log cleaner runs for real."""
    topic = system.stack.settings.commands_topic
    partitions = system.stack.settings.commands_partitions
    send_mixed_commands(system.command_url, items=30, updates=60, seed=21)
    records = read_log(kafka_bootstrap, topic)
    codec = CommandCodec()
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for partition, _o, _key, value in random.Random(3).sample(records, 25):
        command = codec.decode(value)
        retry = replace(
            command,
            accepted_at=datetime.now(UTC).replace(microsecond=0),
            correlation_id=f"retry-{uuid.uuid4()}",
        )
        producer.produce(
            topic,
            key=record_key(command.command_id),
            value=codec.encode(retry),
            partition=partition,
            headers=[(COMMAND_ID_HEADER, command.command_id.encode())],
        )
    legacy = [roll_command() for _ in range(10)]
    for command in legacy:
        for _copy in range(2):
            producer.produce(
                topic,
                key=command.command_id,
                value=codec.encode(command),
                partition=partition_for(command.action_item_id, partitions),
            )
    assert producer.flush(10) == 0
    written = read_log(kafka_bootstrap, topic)
    assert len(written) == len(records) + 25 + 20
    legacy_ids = {c.command_id for c in legacy}
    legacy_first = {
        min((p, o) for p, o, k, _v in written if k == command_id.encode())
        for command_id in legacy_ids
    }
    live = settle(system, mongo)

    compaction = compact_now(kafka_bootstrap, topic, partitions)
    # the cleaner removed exactly the first copies of the legacy pairs: every copy written
    # under a key of its own is still there
    assert set(compaction.removed_from_before()) == legacy_first
    live_after = settle(system, mongo)  # now with the helper's markers and rolls too
    db = mongo[system.stack.settings.mongodb_database]
    result_of(run_rebuild(system.stack))
    rebuilt = snapshot(db)
    helper_ids = compaction.helper_item_ids() | compaction.helper_command_ids()
    compared = compare_models(live, rebuilt, extra_allowed=helper_ids)
    assert compared.differences == [], compared.differences[:5]
    assert rebuilt == live_after


def roll_command() -> CommandEnvelope:
    """A real create of its own item (written twice under key = commandId: a legacy pair)."""
    return CommandEnvelope(
        command_id=str(uuid.uuid4()),
        action_item_id=str(uuid.uuid4()),
        accepted_at=datetime.now(UTC).replace(microsecond=0),
        correlation_id="legacy-pair",
        payload_hash="roll",
        payload=CreateActionItem(title="written before issue 20"),
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
