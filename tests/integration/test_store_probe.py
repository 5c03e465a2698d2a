"""Probe of the MongoDB-wire store: every store feature the project relies on.

Runs against MONGODB_URI, or the local store of infra/store.sh
(FerretDB v2.5.0 on PostgreSQL 15 + DocumentDB 0.106) at
mongodb://127.0.0.1:27017. Start that one with `infra/store.sh start`.

A store that cannot be reached is a failure, never a skip: this test exists
to tell that the store the services will use behaves as they expect.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import ASCENDING, InsertOne, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from servicekit.store_types import StoreClient, StoreCollection, StoreDatabase

STORE_URI = os.environ.get("MONGODB_URI") or "mongodb://127.0.0.1:27017"
IN_CI = os.environ.get("CI", "").lower() == "true"
THREADS = 8


def _redacted(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", uri)


@pytest.fixture(scope="module")
def client() -> Iterator[StoreClient]:
    c: StoreClient = MongoClient(STORE_URI, serverSelectionTimeoutMS=5000, maxPoolSize=2 * THREADS)
    error: PyMongoError | None = None
    try:
        c.admin.command("ping")
    except PyMongoError as exc:
        error = exc
    if error is not None:
        c.close()
        hint = (
            "CI=true: the CI job must start the store before the tests (infra/store.sh start)"
            if IN_CI
            else "start the local store with `infra/store.sh start`, "
            "or point MONGODB_URI at a running MongoDB"
        )
        pytest.fail(
            f"MongoDB-wire store not reachable at {_redacted(STORE_URI)}: {error}\n{hint}",
            pytrace=False,
        )
    yield c
    c.close()


@pytest.fixture(scope="module")
def db(client: StoreClient) -> Iterator[StoreDatabase]:
    name = f"store_probe_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield client[name]
    client.drop_database(name)


@pytest.fixture
def coll(db: StoreDatabase, request: pytest.FixtureRequest) -> Iterator[StoreCollection]:
    c = db[request.node.name.replace("[", "_").replace("]", "")]
    c.drop()
    yield c
    c.drop()


def _run_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in n threads released together; return results, re-raise errors."""
    barrier = threading.Barrier(n, timeout=30)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def _doc(coll: StoreCollection, filter_: dict[str, Any]) -> dict[str, Any]:
    doc = coll.find_one(filter_)
    assert doc is not None, f"no document matches {filter_}"
    return dict(doc)


def _index_names_in_plan(plan: Any) -> set[str]:
    """Index names anywhere in an explain document (MongoDB: indexName; FerretDB/DocumentDB:
    PostgreSQL's "Index Name")."""
    found: set[str] = set()
    if isinstance(plan, dict):
        for key, value in plan.items():
            if key in ("indexName", "Index Name") and isinstance(value, str):
                found.add(value)
            else:
                found |= _index_names_in_plan(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= _index_names_in_plan(item)
    return found


def test_server_identity(client: StoreClient) -> None:
    info = client.admin.command("buildInfo")
    ferret = info.get("ferretdb")
    print(f"store: {_redacted(STORE_URI)} version {info.get('version')} ferretdb {ferret}")
    assert info.get("ok") == 1


def test_find_one_by_id(coll: StoreCollection) -> None:
    coll.insert_many([{"_id": f"item-{i}", "n": i} for i in range(1000)])
    assert coll.find_one({"_id": "item-417"}) == {"_id": "item-417", "n": 417}
    assert coll.find_one({"_id": "missing"}) is None
    plan = coll.find({"_id": "item-417"}).explain()
    assert "_id_" in _index_names_in_plan(plan) or "IDHACK" in str(plan) or "EXPRESS" in str(plan)


def test_bulk_upserts_and_guarded_updates(coll: StoreCollection) -> None:
    # upserts of new _ids, unordered
    res = coll.bulk_write(
        [UpdateOne({"_id": i}, {"$set": {"pos": 10, "v": "a"}}, upsert=True) for i in range(500)],
        ordered=False,
    )
    assert res.upserted_count == 500
    assert coll.count_documents({}) == 500

    # guarded updates {_id, pos: {$lt: p}}: even _ids get a newer position (applied),
    # odd _ids an older or equal one (must be a no-op)
    ops = [
        UpdateOne({"_id": i, "pos": {"$lt": p}}, {"$set": {"pos": p, "v": "b"}})
        for i in range(500)
        for p in [20 if i % 2 == 0 else 10 - (i % 3)]
    ]
    res = coll.bulk_write(ops, ordered=False)
    assert res.matched_count == 250
    assert res.modified_count == 250
    assert coll.count_documents({"pos": 20, "v": "b"}) == 250
    assert coll.count_documents({"pos": 10, "v": "a"}) == 250

    # replaying the same batch changes nothing (exactly-once effect)
    res = coll.bulk_write(ops, ordered=False)
    assert res.modified_count == 0

    # a guarded upsert whose guard fails on an existing _id tries to insert
    # that _id again: duplicate key error (11000) for that op, doc untouched,
    # the other ops of an unordered batch still applied
    with pytest.raises(BulkWriteError) as err:
        coll.bulk_write(
            [
                UpdateOne({"_id": 0, "pos": {"$lt": 5}}, {"$set": {"pos": 5}}, upsert=True),
                UpdateOne({"_id": 1000, "pos": {"$lt": 5}}, {"$set": {"pos": 5}}, upsert=True),
            ],
            ordered=False,
        )
    write_errors = err.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in write_errors] == [(0, 11000)]
    assert _doc(coll, {"_id": 0})["pos"] == 20
    assert _doc(coll, {"_id": 1000})["pos"] == 5


def test_guarded_update_race_has_one_winner(coll: StoreCollection) -> None:
    for round_ in range(10):
        coll.replace_one({"_id": "race"}, {"_id": "race", "pos": round_}, upsert=True)
        target = round_ + 1

        def attempt(i: int, target: int = target) -> int:
            r = coll.update_one(
                {"_id": "race", "pos": {"$lt": target}}, {"$set": {"pos": target, "winner": i}}
            )
            return r.modified_count

        results = _run_threads(THREADS, attempt)
        assert sum(results) == 1, f"round {round_}: {sum(results)} winners"
        doc = _doc(coll, {"_id": "race"})
        assert doc["pos"] == target
        assert results[doc["winner"]] == 1


def test_unique_index_enforced(coll: StoreCollection) -> None:
    coll.create_index([("email", ASCENDING)], unique=True, name="email_unique")
    coll.insert_many([{"_id": 1, "email": "a@x"}, {"_id": 2, "email": "b@x"}])
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 3, "email": "a@x"})
    with pytest.raises(DuplicateKeyError):
        coll.update_one({"_id": 2}, {"$set": {"email": "a@x"}})
    with pytest.raises(DuplicateKeyError):
        coll.update_one({"_id": 4}, {"$set": {"email": "b@x"}}, upsert=True)
    with pytest.raises(BulkWriteError) as err:
        coll.bulk_write(
            [InsertOne({"_id": 5, "email": "c@x"}), InsertOne({"_id": 6, "email": "c@x"})]
        )
    assert err.value.details["writeErrors"][0]["code"] == 11000
    assert _doc(coll, {"_id": 2})["email"] == "b@x"
    assert coll.count_documents({}) == 3  # 1, 2 and 5
    assert coll.find_one({"_id": 3}) is None and coll.find_one({"_id": 4}) is None


def test_inc_is_atomic_under_threads(coll: StoreCollection) -> None:
    coll.insert_one({"_id": "counter", "n": 0})
    per_thread = 50

    def bump(_: int) -> None:
        for _ in range(per_thread):
            coll.update_one({"_id": "counter"}, {"$inc": {"n": 1}})

    _run_threads(THREADS, bump)
    assert _doc(coll, {"_id": "counter"})["n"] == THREADS * per_thread


def test_push_with_slice(coll: StoreCollection) -> None:
    coll.insert_one({"_id": "h", "recent": []})
    for i in range(6):
        coll.update_one({"_id": "h"}, {"$push": {"recent": {"$each": [i], "$slice": -3}}})
    assert _doc(coll, {"_id": "h"})["recent"] == [3, 4, 5]
    # upsert creating the array
    coll.update_one(
        {"_id": "h2"}, {"$push": {"recent": {"$each": [1, 2], "$slice": -3}}}, upsert=True
    )
    assert _doc(coll, {"_id": "h2"})["recent"] == [1, 2]


def test_rename_collection_with_drop_target(db: StoreDatabase) -> None:
    src, dst = db["rename_src"], db["rename_dst"]
    src.drop()
    dst.drop()
    dst.insert_many([{"_id": i, "old": True} for i in range(3)])
    src.insert_many([{"_id": i, "new": True, "k": i} for i in range(5)])
    src.create_index([("k", ASCENDING)], unique=True, name="k_unique")

    src.rename("rename_dst", dropTarget=True)

    names = db.list_collection_names()
    assert "rename_src" not in names and "rename_dst" in names
    assert dst.count_documents({}) == 5 and dst.count_documents({"old": True}) == 0
    assert "k_unique" in dst.index_information()  # indexes move with the collection
    with pytest.raises(DuplicateKeyError):
        dst.insert_one({"_id": 99, "k": 1})
    dst.drop()


def test_find_one_and_update_returns_after(coll: StoreCollection) -> None:
    doc = coll.find_one_and_update(
        {"_id": "seq"}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert doc == {"_id": "seq", "n": 1}
    doc = coll.find_one_and_update(
        {"_id": "seq"},
        {"$inc": {"n": 1}, "$set": {"tag": "x"}},
        return_document=ReturnDocument.AFTER,
    )
    assert doc == {"_id": "seq", "n": 2, "tag": "x"}
    before = coll.find_one_and_update(
        {"_id": "seq"}, {"$inc": {"n": 1}}, return_document=ReturnDocument.BEFORE
    )
    assert before is not None and before["n"] == 2
    assert coll.find_one_and_update({"_id": "nope"}, {"$set": {"a": 1}}) is None


def test_in_queries(coll: StoreCollection) -> None:
    coll.insert_many(
        [{"_id": f"id-{i}", "status": ["open", "done", "blocked"][i % 3]} for i in range(30)]
    )
    got = sorted(d["_id"] for d in coll.find({"_id": {"$in": ["id-1", "id-5", "id-29", "id-99"]}}))
    assert got == ["id-1", "id-29", "id-5"]
    assert coll.count_documents({"status": {"$in": ["open", "blocked"]}}) == 20
    assert coll.count_documents({"_id": {"$in": []}}) == 0


def test_compound_index_sort_and_keyset_pagination(coll: StoreCollection) -> None:
    coll.create_index([("a", ASCENDING), ("_id", ASCENDING)], name="a_1__id_1")
    docs = [{"_id": f"k{i:05d}", "a": i % 37} for i in range(3000)]
    coll.insert_many(docs)
    expected = [d["_id"] for d in sorted(docs, key=lambda d: (d["a"], d["_id"]))]
    sort = [("a", ASCENDING), ("_id", ASCENDING)]
    page_size = 250

    seen: list[str] = []
    last: dict[str, Any] | None = None
    while True:
        query: dict[str, Any] = (
            {}
            if last is None
            else {"$or": [{"a": {"$gt": last["a"]}}, {"a": last["a"], "_id": {"$gt": last["_id"]}}]}
        )
        page = list(coll.find(query).sort(sort).limit(page_size))
        if not page:
            break
        seen.extend(d["_id"] for d in page)
        last = page[-1]
    assert seen == expected

    keyset = {"$or": [{"a": {"$gt": 20}}, {"a": 20, "_id": {"$gt": "k01500"}}]}
    plan = coll.find(keyset).sort(sort).limit(page_size).explain()
    assert "a_1__id_1" in _index_names_in_plan(plan), f"compound index not used: {plan}"
