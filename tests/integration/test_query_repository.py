"""The query API's store adapter against the real store: indexes, plans, filters, keyset paging."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from domain.rules import ActionItem, timestamp
from query_api.cursor import Cursor, filters_digest
from query_api.listing import CLOCK_SKEW, FILTER_FIELDS, ListQuery
from query_api.repository import ReadRepository
from servicekit.read_model import LIST_INDEXES, ReadModel, swap_active_generation
from servicekit.store_types import StoreClient, StoreDatabase
from tests.support.query_data import (
    ASSIGNEES,
    PRIORITIES,
    STATUSES,
    T0,
    TAGS,
    Churn,
    document,
    expected_ids,
    item,
    plan_summary,
    seed,
    varied_items,
)

LIST_INDEX_NAMES = set(LIST_INDEXES)


@pytest.fixture
def db(mongo: StoreClient) -> Iterator[StoreDatabase]:
    name = f"test_query_{uuid.uuid4().hex[:10]}"
    yield mongo[name]
    mongo.drop_database(name)


@pytest.fixture
def repo(mongo: StoreClient, db: StoreDatabase) -> ReadRepository:
    return ReadRepository(mongo, db.name, cache_seconds=0)


def page_through(repo: ReadRepository, limit: int, **filters: str) -> list[dict[str, Any]]:
    """Every page until nextCursor is null, as the HTTP handler builds cursors."""
    seen: list[dict[str, Any]] = []
    after = None
    for _ in range(10_000):
        page = repo.list_items(ListQuery(filters, limit, after))
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.last is None:
            return seen
        after = Cursor(*page.last, filters_digest(filters))
    raise AssertionError("paging did not end")


def test_indexes_for_every_filter_and_the_order_are_created_idempotently(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    repo.ensure_indexes()
    model = repo.read_model()
    first = model.items.index_information()
    ReadModel(db, model.generation).ensure_indexes()  # the projector does the same at start
    repo.ensure_indexes()
    again = model.items.index_information()
    assert first == again
    keys = {name: [k for k, _ in spec["key"]] for name, spec in again.items()}
    assert keys["list_order"] == ["createdAt", "_id"]
    for param, field in FILTER_FIELDS.items():
        if field != "tags":  # read through list_order (servicekit/read_model.py)
            assert keys[f"list_{field}"] == [field, "createdAt", "_id"], param


def test_the_earlier_list_indexes_are_replaced(repo: ReadRepository, db: StoreDatabase) -> None:
    """A read model made by an earlier release has unordered `order`/`by_*` indexes."""
    items = repo.read_model().items
    order = [("createdAt", 1), ("_id", 1)]
    items.drop_indexes()
    items.create_index(order, name="order")
    for field in ("status", "assignee", "priority", "tags"):
        items.create_index([(field, 1), *order], name=f"by_{field}")
    ReadModel(db, repo.read_model().generation).ensure_indexes()
    assert set(items.index_information()) == {"_id_", *LIST_INDEX_NAMES}


def test_every_list_query_with_a_filter_or_a_cursor_is_served_by_an_index(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    """explain() on this store: the first window query of every list reads one of our indexes.

    FerretDB/DocumentDB cannot return rows in index order here, so the sort
    itself is a top-N sort over the rows the index selected: the createdAt
    window bounds them (docs/query-api.md).
    """
    seed(db, varied_items(3000))
    repo.ensure_indexes()
    after = Cursor(*_middle_position(repo), "0" * 16)
    queries = [{"status": "open"}, {"assignee": "bo"}, {"priority": "high"}, {"tag": "ops"}]
    queries += [{"status": "done", "assignee": "ana"}, {"tag": "ui", "priority": "low"}]
    queries += [{"status": "open", "assignee": "chen", "priority": "urgent", "tag": "db"}]
    for filters in queries:
        for cursor in (None, after):
            indexes, full_scan = plan_summary(repo.explain_list(ListQuery(filters, 50, cursor)))
            assert indexes & LIST_INDEX_NAMES, (filters, cursor, indexes)
            assert not full_scan, (filters, cursor)
    indexes, full_scan = plan_summary(repo.explain_list(ListQuery({}, 50, after)))
    assert indexes & LIST_INDEX_NAMES and not full_scan


def _middle_position(repo: ReadRepository) -> tuple[str, str]:
    page = repo.list_items(ListQuery({}, 200, None))
    assert page.last is not None
    return page.last


def test_every_filter_and_combination_returns_exactly_the_matching_items_in_order(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    states = varied_items(400)
    seed(db, states)
    values = {
        "status": STATUSES,
        "assignee": [a for a in ASSIGNEES if a],
        "priority": PRIORITIES,
        "tag": TAGS,
    }
    cases: list[dict[str, str]] = [{}]
    cases += [{name: v} for name, vs in values.items() for v in vs]
    for a, b in itertools.combinations(values, 2):
        cases += [{a: values[a][0], b: values[b][1]}, {a: values[a][-1], b: values[b][0]}]
    cases += [{"status": "open", "assignee": "ana", "priority": "normal", "tag": "ops"}]
    cases += [{"assignee": "nobody"}, {"tag": "no-such-tag"}]
    for filters in cases:
        got = [i["id"] for i in page_through(repo, 23, **filters)]
        assert got == expected_ids(states, **filters), filters


def spread_over_time(states: list[ActionItem], seed_: int = 3) -> list[ActionItem]:
    """The same items with createdAt spread so that pages span many list windows: runs
    sharing one millisecond, gaps from 0 to minutes, a few of days, some on whole window
    boundaries, the newest an hour old and the last five ahead of the API's clock (by more
    than the skew)."""
    rng = random.Random(seed_)
    offsets = list(itertools.accumulate(rng.choice(GAPS) for _ in states[:-5]))
    newest = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    moments = [newest - offsets[-1] + o for o in offsets]
    ahead = datetime.now(UTC) + CLOCK_SKEW + timedelta(hours=1)
    moments += [ahead + timedelta(seconds=n) for n in range(5)]
    return [
        replace(s, created_at=timestamp(at), updated_at=timestamp(at))
        for s, at in zip(states, moments, strict=True)
    ]


GAPS = [timedelta(0)] * 30 + [timedelta(milliseconds=1)] * 10 + [timedelta(seconds=4)] * 20
GAPS += [timedelta(milliseconds=700)] * 20 + [timedelta(seconds=9)] * 10
GAPS += [timedelta(minutes=3)] * 8 + [timedelta(days=2)] * 2


def test_windows_over_spread_items_list_exactly_the_matching_items_in_order(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    """Every filter and combination, at limits 1, 7 and 50, over items whose createdAt spread
    makes a page take several windows (and the unbounded last query)."""
    states = spread_over_time(varied_items(600))
    seed(db, states)
    values = {
        "status": STATUSES,
        "assignee": [a for a in ASSIGNEES if a],
        "priority": PRIORITIES,
        "tag": TAGS,
    }
    cases: list[dict[str, str]] = [{}]
    cases += [{name: v} for name, vs in values.items() for v in vs]
    for a, b in itertools.combinations(values, 2):
        cases += [{a: values[a][0], b: values[b][1]}]
    cases += [{"status": "open", "assignee": "ana", "priority": "normal", "tag": "ops"}]
    cases += [{"assignee": "nobody"}]
    for limit in (7, 50):
        for filters in cases:
            got = [i["id"] for i in page_through(repo, limit, **filters)]
            assert got == expected_ids(states, **filters), (limit, filters)
    assert [i["id"] for i in page_through(repo, 1, tag="ops")] == expected_ids(states, tag="ops")


def test_items_are_the_public_shape_without_internal_fields(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    state = item(assignee="ana", tags=["ops"], exceptions=2)
    seed(db, [state])
    got = repo.get_item(state.id)
    assert got is not None
    stored = document(state)
    assert got == {"id": state.id, **{k: v for k, v in stored.items() if not k.startswith("_")}}
    assert [i["id"] for i in repo.list_items(ListQuery({}, 5, None)).items] == [state.id]
    assert repo.list_items(ListQuery({}, 5, None)).items[0] == got


def test_paging_never_skips_or_repeats_while_every_item_keeps_changing(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    """1,000 items spread over time (runs share a createdAt, pages span several windows),
    limit 37, a thread rewriting items meanwhile."""
    states = spread_over_time(varied_items(1000))
    model = seed(db, states)
    with Churn(model, states) as churn:
        churn.wait_for_writes(50)
        seen: list[dict[str, Any]] = []
        after = None
        while True:
            page = repo.list_items(ListQuery({}, 37, after))
            seen.extend(page.items)
            if page.last is None:
                break
            after = Cursor(*page.last, filters_digest({}))
            churn.wait_for_writes(churn.writes + 10)  # interleave pages and writes
        tagged = page_through(repo, 37, tag="ops")
        writes = churn.writes
    ids = [i["id"] for i in seen]
    assert len(ids) == len(set(ids)) == 1000
    assert ids == expected_ids(states)
    assert writes >= 50 + 10 * 27
    assert any(i["version"] > 1 for i in seen), "the pages saw none of the updates"
    assert [i["id"] for i in tagged] == expected_ids(states, tag="ops")


def test_a_cursor_keeps_working_across_a_generation_swap(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    states = varied_items(300)
    old = seed(db, states)
    new = ReadModel(db, "g-rebuilt")
    new.items.insert_many([document(s) for s in states])  # a rebuild makes identical documents
    first = repo.list_items(ListQuery({"status": "open"}, 10, None))
    assert first.last is not None
    swap_active_generation(db, new.generation)
    old.items.delete_many({})  # nothing may come from the old generation any more
    rest = page_through_after(repo, first.last, status="open")
    ids = [i["id"] for i in first.items + rest]
    assert ids == expected_ids(states, status="open")
    assert "list_status" in new.items.index_information(), "indexes follow the active generation"


def page_through_after(
    repo: ReadRepository, last: tuple[str, str], **filters: str
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    after: Cursor | None = Cursor(*last, filters_digest(filters))
    while after is not None:
        page = repo.list_items(ListQuery(filters, 10, after))
        seen.extend(page.items)
        after = Cursor(*page.last, filters_digest(filters)) if page.last else None
    return seen


@pytest.mark.parametrize("created", ["in one window", "ahead of the clock"])
def test_a_batch_cut_short_by_the_stores_reply_limit_loses_nothing(
    repo: ReadRepository, db: StoreDatabase, created: str
) -> None:
    """A single batch is capped at 16 MiB: 200 items of ~120 KiB do not fit in one.

    Inside a bounded window the next query simply continues after the last row
    it got; the last, unbounded query (here: items stamped a day ahead of the
    API's clock) may end a page short, and then the page still has a cursor.
    """
    big = "x" * 120_000
    start = T0 if created == "in one window" else datetime.now(UTC) + timedelta(days=1)
    states = [
        item(title=f"big {n}", created=start + timedelta(milliseconds=n), description=big)
        for n in range(201)
    ]
    seed(db, states, chunk=50)
    first = repo.list_items(ListQuery({}, 200, None))
    assert first.last is not None
    if created == "ahead of the clock":
        assert 0 < len(first.items) < 200, "expected the store to cut the batch"
    ids = [i["id"] for i in first.items + page_through_after(repo, first.last)]
    assert ids == expected_ids(states)


class FindCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.finds = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_after_the_first_page_a_steady_pace_takes_one_query_per_page(
    mongodb_uri: str, db: StoreDatabase
) -> None:
    """Items 100 ms apart: the first window (4 s) holds 40 of a page's 51 rows, so the first
    page takes two queries; the next pages start with the width the last page needed."""
    states = [
        item(title=f"paced {n}", created=T0 + n * timedelta(milliseconds=100)) for n in range(600)
    ]
    seed(db, states)
    counter = FindCounter()
    client: StoreClient = MongoClient(mongodb_uri, event_listeners=[counter])
    try:
        repo = ReadRepository(client, db.name, cache_seconds=60)
        repo.ensure_indexes()
        finds: list[int] = []
        seen: list[str] = []
        after = None
        while True:
            before = counter.finds
            page = repo.list_items(ListQuery({}, 50, after))
            finds.append(counter.finds - before)
            seen += [i["id"] for i in page.items]
            if page.last is None:
                break
            after = Cursor(*page.last, filters_digest({}))
        assert seen == [s.id for s in states]
        assert finds[0] >= 2, finds  # the fixed first window is too narrow for this pace
        assert finds[1:-1] == [1] * (len(finds) - 2), finds  # full pages: one query each
    finally:
        client.close()
