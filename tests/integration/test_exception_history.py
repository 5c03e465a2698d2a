"""Issue 16 on the real store: bounded item documents, the Exceptions history beside them.

The projector's own store adapter writes (``apply_batch`` over ``ProjectionStore``,
no Kafka: the log positions are given) and the query API reads, in process:
- an item with more rejections than the inline limit keeps exactly the last 20
  inline, its count is exact, and GET .../exceptions pages through every entry
  once and in log order, also while new rejections arrive between pages;
- the item's stored document, and every item write the projector sends, stay
  under a fixed size however many commands the item has seen.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bson
import pytest

from domain.commands import CommandEnvelope
from domain.planning import CommandRecord
from domain.rules import INLINE_EXCEPTIONS, LogPosition
from projector.apply import apply_batch
from projector.store import ProjectionStore
from query_api.app import create_app
from query_api.models import ActionItem, ExceptionPage
from query_api.settings import QueryApiSettings
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.support.auth import caller_headers
from tests.support.query_data import CommandLog, listening_client
from tests.unit.builders import create, update

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"
# Far above what one item can take (fields within the command limits + 20 entries), far
# below what an unbounded history reaches after a few hundred rejections.
MAX_ITEM_DOCUMENT = 48 * 1024


@dataclass
class Projected:
    """A partition of a pretend log, written with the projector's own store adapter."""

    store: ProjectionStore
    partition: int = 0
    next_offset: int = 0

    def apply(self, *commands: CommandEnvelope) -> None:
        records = []
        for command in commands:
            records.append(CommandRecord(LogPosition(self.partition, self.next_offset), command))
            self.next_offset += 1
        apply_batch(self.store, records)


@dataclass
class World:
    db_name: str
    log: Projected
    writes: CommandLog
    http: TestClient


@pytest.fixture
def world(mongodb_uri: str, mongo: StoreClient) -> Iterator[World]:
    db_name = f"test_history_{uuid.uuid4().hex[:10]}"
    writes = CommandLog()
    writer = listening_client(mongodb_uri, writes)
    store = ProjectionStore(writer, db_name)
    store.ensure_indexes()
    settings = QueryApiSettings(mongodb_uri=mongodb_uri, mongodb_database=db_name)
    try:
        with TestClient(create_app(settings), headers=caller_headers("reader")) as http:
            yield World(db_name, Projected(store), writes, http)
    finally:
        writer.close()
        mongo.drop_database(db_name)


def stale(item_id: str, n: int) -> CommandEnvelope:
    """A PATCH with an If-Match no item version ever matches: rejected, recorded on the item."""
    return update(item_id, expected=10**6, title=f"stale {n}", at=n)


def page_through(world: World, item_id: str, limit: int, between: Any = None) -> list[Any]:
    entries: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = world.http.get(f"/action-items/{item_id}/exceptions", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        ExceptionPage.model_validate(body)  # what the OpenAPI document says, exactly
        assert len(body["items"]) <= limit
        entries += body["items"]
        cursor = body["nextCursor"]
        pages += 1
        if between is not None:
            between(pages)
        if cursor is None:
            return entries


def test_more_rejections_than_the_inline_limit_page_once_and_in_order(
    world: World, mongo: StoreClient
) -> None:
    item_id = str(uuid.uuid4())
    world.log.apply(create(item_id))
    rejected: list[str] = []
    n = 0
    for _ in range(9):  # 9 batches: 5 rejections and one applied update each
        batch = [stale(item_id, n + i) for i in range(5)]
        rejected += [c.command_id for c in batch]
        n += 6
        world.log.apply(*batch, update(item_id, title=f"applied {n}", at=n))
    assert len(rejected) > 2 * INLINE_EXCEPTIONS

    doc = active_read_model(mongo[world.db_name]).items.find_one({"_id": item_id})
    assert doc is not None
    assert doc["exceptionCount"] == len(rejected)
    assert [e["commandId"] for e in doc["exceptions"]] == rejected[-INLINE_EXCEPTIONS:]
    assert doc["version"] == 10  # the rejections changed nothing else

    item = world.http.get(f"/action-items/{item_id}")
    assert item.status_code == 200
    assert item.json()["exceptionCount"] == len(rejected)
    ActionItem.model_validate(item.json())
    inline = item.json()["exceptions"]
    assert [e["commandId"] for e in inline] == rejected[-INLINE_EXCEPTIONS:]

    # paging while new rejections arrive: they come after what was already served
    def more_rejections(pages: int) -> None:
        if pages in (2, 4):
            batch = [stale(item_id, 1000 + pages * 10 + i) for i in range(3)]
            rejected.extend(c.command_id for c in batch)
            world.log.apply(*batch)

    entries = page_through(world, item_id, limit=7, between=more_rejections)
    assert [e["commandId"] for e in entries] == rejected  # every entry, once, in log order
    offsets = [e["offset"] for e in entries]
    assert offsets == sorted(offsets)
    assert {e["code"] for e in entries} == {"VERSION_CONFLICT"}
    # the inline entries are the history's last ones, field for field
    again = world.http.get(f"/action-items/{item_id}").json()
    assert again["exceptionCount"] == len(rejected)
    assert again["exceptions"] == entries[-INLINE_EXCEPTIONS:]
    # one page with everything, and the largest limit
    whole = world.http.get(f"/action-items/{item_id}/exceptions", params={"limit": 200}).json()
    assert whole == {"items": entries, "nextCursor": None}


def test_the_history_answers_like_the_item(world: World) -> None:
    item_id = str(uuid.uuid4())
    world.log.apply(create(item_id), *[stale(item_id, n) for n in range(1, 4)])
    url = f"/action-items/{item_id}/exceptions"
    first = world.http.get(url, params={"limit": 2})
    assert first.status_code == 200
    tag = first.headers["ETag"]
    assert world.http.get(url, params={"limit": 2}, headers={"If-None-Match": tag}).status_code == (
        304
    )
    cursor = first.json()["nextCursor"]
    assert cursor is not None
    # a new rejection: the last page changes (and so does its tag), the first does not
    last = world.http.get(url, params={"limit": 2, "cursor": cursor})
    world.log.apply(stale(item_id, 9))
    assert world.http.get(url, params={"limit": 2}).headers["ETag"] == tag
    last_again = world.http.get(url, params={"limit": 2, "cursor": cursor})
    assert last_again.headers["ETag"] != last.headers["ETag"]
    assert len(last_again.json()["items"]) == 2

    unknown = world.http.get(f"/action-items/{uuid.uuid4()}/exceptions")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    for bad in ("garbage", cursor[:-2]):
        answer = world.http.get(url, params={"cursor": bad})
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == PROBLEM
        assert "cursor" in [e["field"] for e in answer.json()["errors"]]
    other = str(uuid.uuid4())
    world.log.apply(create(other))
    foreign = world.http.get(f"/action-items/{other}/exceptions", params={"cursor": cursor})
    assert foreign.status_code == 400
    for limit in (0, 201):
        assert world.http.get(url, params={"limit": limit}).status_code == 422
    assert world.http.get("/action-items/not-a-uuid/exceptions").status_code == 422
    # no rejections: an empty history, not a 404
    assert world.http.get(f"/action-items/{other}/exceptions").json() == {
        "items": [],
        "nextCursor": None,
    }


def test_the_item_document_and_each_write_stay_bounded_while_commands_keep_coming(
    world: World, mongo: StoreClient
) -> None:
    item_id = str(uuid.uuid4())
    world.log.apply(create(item_id, title="t" * 200))
    items = active_read_model(mongo[world.db_name]).items
    sizes = []
    for batch in range(30):
        commands = []
        for i in range(50):
            n = 100 + batch * 50 + i
            if i % 3:
                commands.append(stale(item_id, n))
            else:
                commands.append(update(item_id, title=f"{n}" + "x" * 190, at=n))
        world.writes.clear()
        world.log.apply(*commands)
        doc = items.find_one({"_id": item_id})
        assert doc is not None
        sizes.append(len(bson.encode(doc)))
        item_updates = [
            u
            for name, c in world.writes.commands
            if name == "update" and c["update"] == items.name
            for u in c["updates"]
        ]
        assert item_updates, "the item was written"
        for u in item_updates:
            assert set(u["u"]) == {"$set"}, u  # fields, never the whole document
            assert len(bson.encode(u["u"])) < MAX_ITEM_DOCUMENT
    final = items.find_one({"_id": item_id})
    assert final is not None and final["exceptionCount"] == 30 * 33
    assert max(sizes) < MAX_ITEM_DOCUMENT, sizes
    assert sizes[-1] <= sizes[1] * 1.2, sizes  # flat after the inline list filled up
    history = active_read_model(mongo[world.db_name]).exceptions
    assert history.count_documents({"itemId": item_id}) == 30 * 33
