"""A rebuild killed with kill -9 leaves its half-built generation; the next rebuild drops it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from projector.rebuild_lease import LEASE_KIND, RebuildLease, drop_abandoned
from servicekit.read_model import META_COLLECTION, POINTER_ID, ReadModel
from servicekit.store_types import StoreClient, StoreDatabase
from tests.support.waiting import wait_until


@pytest.fixture
def db(mongo: StoreClient) -> Iterator[StoreDatabase]:
    name = f"lease_{uuid.uuid4().hex[:8]}"
    yield mongo[name]
    mongo.drop_database(name)


def half_built(db: StoreDatabase, generation: str, heartbeat_age_s: float) -> ReadModel:
    """A generation with documents and a lease last renewed ``heartbeat_age_s`` ago."""
    model = ReadModel(db, generation)
    model.items.insert_one({"_id": "item", "title": "half-built"})
    at = datetime.now(UTC) - timedelta(seconds=heartbeat_age_s)
    db[META_COLLECTION].insert_one(
        {
            "_id": f"{LEASE_KIND}:{generation}",
            "kind": LEASE_KIND,
            "generation": generation,
            "startedAt": at,
            "heartbeatAt": at,
        }
    )
    return model


def generation_collections(db: StoreDatabase, generation: str) -> list[str]:
    return [n for n in db.list_collection_names() if n.endswith(f"_{generation}")]


def test_only_generations_whose_rebuild_stopped_renewing_are_dropped(db: StoreDatabase) -> None:
    db[META_COLLECTION].insert_one({"_id": POINTER_ID, "generation": "rlive", "previous": "rprev"})
    half_built(db, "rkilled", heartbeat_age_s=600)
    half_built(db, "rrunning", heartbeat_age_s=1)
    half_built(db, "rprev", heartbeat_age_s=600)  # a stale lease never drops a kept generation

    assert drop_abandoned(db, abandoned_after=60) == ["rkilled"]

    assert generation_collections(db, "rkilled") == []
    assert generation_collections(db, "rrunning") != []
    assert generation_collections(db, "rprev") != []
    leases = {d["generation"] for d in db[META_COLLECTION].find({"kind": LEASE_KIND})}
    assert leases == {"rrunning"}  # stale leases are gone, the live one stays


def test_a_running_rebuild_renews_its_lease_and_removes_it_at_the_end(db: StoreDatabase) -> None:
    lease_id = f"{LEASE_KIND}:rnow"
    with RebuildLease(db, "rnow", heartbeat_seconds=0.2):
        first = db[META_COLLECTION].find_one({"_id": lease_id})
        assert first is not None
        wait_until(
            lambda: (
                (db[META_COLLECTION].find_one({"_id": lease_id}) or {}).get("heartbeatAt")
                != first["heartbeatAt"]
            ),
            10,
            "the lease to be renewed",
        )
        assert drop_abandoned(db, abandoned_after=60) == []
    assert db[META_COLLECTION].find_one({"_id": lease_id}) is None
