"""The store adapter on the real store: guarded writes under redelivery, crashes, races."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from domain.planning import CommandRecord
from domain.rules import LogPosition
from projector.apply import apply_batch
from projector.store import ProjectionStore, StoreRejected, StoreUnavailable
from schemas.partitioning import partition_for
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.support.projector_log import CommandMix
from tests.support.projector_model import differences, fold_commands, read_stored

PARTITIONS = 3


@pytest.fixture
def store(mongo: StoreClient) -> Iterator[ProjectionStore]:
    name = f"test_store_{uuid.uuid4().hex[:10]}"
    store = ProjectionStore(mongo, name)
    store.ensure_indexes()
    yield store
    mongo.drop_database(name)


def on_the_log(count: int, seed: int = 3) -> list[CommandRecord]:
    offsets = [0] * PARTITIONS
    out = []
    for command in CommandMix(items=60, seed=seed, rejections=0.15, resend=0.05).take(count):
        p = partition_for(command.action_item_id, PARTITIONS)
        out.append(CommandRecord(LogPosition(p, offsets[p]), command))
        offsets[p] += 1
    return out


def test_batches_applied_twice_and_out_of_step_equal_the_fold(
    store: ProjectionStore, mongo: StoreClient
) -> None:
    log = on_the_log(600)
    for i in range(0, len(log), 100):
        apply_batch(store, log[i : i + 100])
    again = apply_batch(store, log)  # the whole log redelivered
    assert again.outcomes == [] and again.item_writes == []
    for i in range(0, len(log), 37):  # and once more, cut differently
        apply_batch(store, log[i : i + 37])
    db = mongo[store.read_model().db.name]
    assert differences(fold_commands(log), read_stored(db)) == []


def test_a_crash_between_the_status_and_the_item_writes_is_repaired(
    store: ProjectionStore, mongo: StoreClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = on_the_log(300, seed=4)
    apply_batch(store, log[:100])
    real = ProjectionStore._write_items

    def crash(self: ProjectionStore, *_: object) -> bool:
        raise StoreUnavailable("connection lost after the statuses were written")

    monkeypatch.setattr(ProjectionStore, "_write_items", crash)
    with pytest.raises(StoreUnavailable):
        apply_batch(store, log[100:200])
    monkeypatch.setattr(ProjectionStore, "_write_items", real)
    rm = active_read_model(mongo[store.read_model().db.name])
    assert rm.commands.count_documents({}) > 100  # the statuses of the lost batch are there
    apply_batch(store, log[50:])
    assert differences(fold_commands(log), read_stored(rm.db)) == []


def test_racing_writers_of_the_same_records_have_one_effect(
    store: ProjectionStore, mongo: StoreClient
) -> None:
    log = on_the_log(900, seed=5)
    db_name = store.read_model().db.name
    rivals = [ProjectionStore(mongo, db_name, write_concurrency=2) for _ in range(3)]
    errors: list[BaseException] = []

    def run(rival: ProjectionStore, size: int) -> None:
        try:
            for i in range(0, len(log), size):
                apply_batch(rival, log[i : i + size])
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(r, size))
        for r, size in zip(rivals, (50, 120, 300), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert differences(fold_commands(log), read_stored(mongo[db_name])) == []


def test_a_duplicate_on_another_unique_index_is_a_refusal_not_a_race(
    store: ProjectionStore,
) -> None:
    log = on_the_log(200, seed=6)
    store.read_model().items.create_index("title", unique=True, name="test_unique_title")
    store.read_model().items.insert_one({"_id": "squatter", "title": log[0].command.payload.title})
    with pytest.raises(StoreRejected, match="test_unique_title"):
        apply_batch(store, log[:1])


def test_an_unreachable_store_is_unavailable_not_refused() -> None:
    dead: StoreClient = MongoClient("mongodb://127.0.0.1:9", serverSelectionTimeoutMS=300)
    store = ProjectionStore(dead, "nowhere")
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        apply_batch(store, on_the_log(5))
