"""What the read model must be: the pure domain folded over the log itself (a test oracle)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from domain.planning import CommandRecord, plan_batch, settled_outcomes
from domain.rules import LogPosition
from projector.documents import claim_doc, history_doc, item_doc, status_doc
from schemas.codec import CommandCodec, DecodeError
from schemas.record_key import is_legacy_key
from servicekit.read_model import ReadModel, active_generation
from servicekit.store_types import StoreDatabase
from tests.support.auth import caller_headers


def read_log(
    bootstrap: str, topic: str, timeout: float = 30
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record now on the topic as (partition, offset, key, value), in per-partition order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"oracle-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
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
        records: list[tuple[int, int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        done: set[int] = set()
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"log not read to its end within {timeout} s")
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                p, o = msg.partition(), msg.offset()
                if p is None or o is None:  # only records produced locally lack them
                    raise AssertionError(f"a consumed record of {topic} has no partition/offset")
                records.append((p, o, msg.key(), msg.value()))
                if o + 1 >= ends[p]:
                    done.add(p)
        return sorted(records, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close()


def expected_model(
    records: list[tuple[int, int, bytes | None, bytes | None]],
) -> dict[str, dict[str, Any]]:
    codec = CommandCodec()
    decoded = []
    for partition, offset, key, value in records:
        try:
            command = codec.decode(value)
        except DecodeError:
            continue
        legacy = is_legacy_key(key, command.command_id)  # written before issue 20
        decoded.append(CommandRecord(LogPosition(partition, offset), command, legacy_key=legacy))
    plan = plan_batch(decoded, {}, {})
    history = {h.entry.command_id: history_doc(h) for h in plan.history}
    for move in plan.moves:  # written after the items, as the store does
        moved = history.get(move.command_id)
        if moved is not None and moved["offset"] < move.position.offset:
            moved.update(partition=move.position.partition, offset=move.position.offset)
    return {
        "items": {w.stored.state.id: item_doc(w.stored) for w in plan.item_writes},
        "commands": {o.command_id: status_doc(o) for o in settled_outcomes(plan)},
        "exceptions": history,
        "keys": {c.id: claim_doc(c) for c in plan.key_claims},
    }


def snapshot(db: StoreDatabase, generation: str | None = None) -> dict[str, dict[str, Any]]:
    model = ReadModel(db, generation or active_generation(db))
    return {
        "items": {d["_id"]: d for d in model.items.find({})},
        "commands": {d["_id"]: d for d in model.commands.find({})},
        "exceptions": {d["_id"]: d for d in model.exceptions.find({})},
        "keys": {d["_id"]: d for d in model.key_claims.find({})},
    }


def wait_until_projected(
    db: StoreDatabase, bootstrap: str, topic: str, timeout: float = 60
) -> None:
    """Bounded wait until the active generation's positions reach every partition's end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4().hex[:6]}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.topics[topic].partitions
        }
    finally:
        consumer.close()
    deadline = time.monotonic() + timeout
    while True:
        model = ReadModel(db, active_generation(db))
        reached = {int(d["partition"]): int(d["nextOffset"]) for d in model.positions.find({})}
        if all(reached.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"projector did not reach {ends} within {timeout} s (at {reached})")
        time.sleep(0.1)


def send_mixed_commands(command_url: str, items: int, updates: int, seed: int = 7) -> list[str]:
    """Creates, then updates with every kind of outcome; returns the accepted commandIds."""
    accepted: list[str] = []
    ids: list[str] = []
    with httpx.Client(
        headers=caller_headers("anonymous"), base_url=command_url, timeout=30
    ) as client:

        def post(i: int) -> dict[str, Any]:
            body = {
                "title": f"item {i}",
                "priority": ["low", "normal", "high"][(seed + i) % 3],
                "tags": [f"t{i % 5}"],
                "assignee": f"user{i % 7}",
            }
            r = client.post(
                "/action-items", json=body, headers={"Idempotency-Key": f"c-{seed}-{i}"}
            )
            assert r.status_code == 202, r.text
            return r.json()

        with ThreadPoolExecutor(8) as pool:
            for result in pool.map(post, range(items)):
                ids.append(result["actionItemId"])
                accepted.append(result["commandId"])
        # a retry of a create with the same key: same commandId, one effect
        assert post(0)["commandId"] == accepted[0]

        def patch(j: int) -> str:
            kind = j % 6
            target = ids[j % len(ids)]
            headers = {}
            if kind == 0:
                body: dict[str, Any] = {
                    "status": ["in_progress", "done", "cancelled", "open"][(seed * j) % 4]
                }
            elif kind == 1:
                body = {"title": f"renamed {j}", "tags": [f"t{j % 3}", "x"]}
            elif kind == 2:
                body, headers = {"priority": "urgent"}, {"If-Match": '"1"'}
            elif kind == 3:
                target = str(uuid.uuid4())  # NOT_FOUND
                body = {"title": "ghost"}
            elif kind == 4:
                body = {"assignee": None, "dueDate": "2027-01-0" + str(1 + j % 9)}
            else:
                body = {"status": "done"}
            r = client.patch(f"/action-items/{target}", json=body, headers=headers)
            assert r.status_code == 202, r.text
            return str(r.json()["commandId"])

        with ThreadPoolExecutor(8) as pool:
            accepted.extend(pool.map(patch, range(updates)))
    return accepted
