"""The query API's store adapter against the real store: indexes, plans, filters, keyset paging."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from query_api.cursor import Cursor, filters_digest
from query_api.listing import FILTER_FIELDS, ListQuery
from query_api.repository import ReadRepository
from servicekit.read_model import ReadModel, swap_active_generation
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

LIST_INDEXES = {"order", *(f"by_{field}" for field in FILTER_FIELDS.values())}


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
    assert keys["order"] == ["createdAt", "_id"]
    for param, field in FILTER_FIELDS.items():
        assert keys[f"by_{field}"] == [field, "createdAt", "_id"], param


def test_every_list_query_with_a_filter_or_a_cursor_is_served_by_an_index(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    """explain() on this store: the filter (and the keyset range) use our indexes.

    FerretDB/DocumentDB cannot return rows in index order here, so the sort
    itself is a top-N sort over the rows the index selected (docs/query-api.md);
    the first page of an unfiltered list therefore reads every item.
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
            assert indexes & LIST_INDEXES, (filters, cursor, indexes)
            assert not full_scan, (filters, cursor)
    indexes, full_scan = plan_summary(repo.explain_list(ListQuery({}, 50, after)))
    assert indexes & LIST_INDEXES and not full_scan


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
    """1,000 items (runs of 5 share a createdAt), limit 37, a thread rewriting items meanwhile."""
    states = varied_items(1000)
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
    assert "by_status" in new.items.index_information(), "indexes follow the active generation"


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


def test_a_page_cut_short_by_the_stores_reply_limit_still_has_a_next_cursor(
    repo: ReadRepository, db: StoreDatabase
) -> None:
    """A single batch is capped at 16 MiB: 200 items of ~120 KiB do not fit in one page."""
    big = "x" * 120_000
    states = [
        item(title=f"big {n}", created=T0 + timedelta(seconds=n), description=big)
        for n in range(201)
    ]
    seed(db, states, chunk=50)
    first = repo.list_items(ListQuery({}, 200, None))
    assert 0 < len(first.items) < 200, "expected the store to cut the batch"
    assert first.last is not None
    ids = [i["id"] for i in first.items + page_through_after(repo, first.last)]
    assert ids == expected_ids(states)
