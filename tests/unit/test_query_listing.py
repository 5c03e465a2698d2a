"""The list query: parameter checks and the store filter it becomes (pure)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.rules import timestamp
from query_api.cursor import Cursor
from query_api.listing import (
    CLOCK_SKEW,
    FILTER_FIELDS,
    FIRST_WINDOW,
    MAX_GROWTH,
    ListQuery,
    after_position,
    index_for,
    next_width,
    parameter_errors,
    parse_timestamp,
    store_filter,
    window_end,
)
from servicekit.read_model import LIST_FILTER_INDEXES, LIST_INDEXES

ID = str(uuid.UUID(int=9))
AT = "2026-11-25T09:00:00.000Z"


def test_filters_map_to_fixed_document_fields() -> None:
    query = ListQuery({"status": "open", "assignee": "ana", "priority": "high", "tag": "ops"})
    assert store_filter(query) == {
        "status": "open",
        "assignee": "ana",
        "priority": "high",
        "tags": "ops",
    }


def test_a_cursor_continues_strictly_after_its_position() -> None:
    query = ListQuery({"tag": "ops"}, 10, Cursor(AT, ID, "0" * 16))
    assert store_filter(query) == {"tags": "ops", **after_position(AT, ID)}
    assert after_position(AT, ID) == {
        "createdAt": {"$gte": AT},
        "$or": [{"createdAt": {"$gt": AT}}, {"_id": {"$gt": ID}}],
    }


def test_an_explicit_position_overrides_the_cursor() -> None:
    query = ListQuery({}, 10, Cursor(AT, ID, "0" * 16))
    assert store_filter(query, ("2027", "z")) == after_position("2027", "z")


@pytest.mark.parametrize(
    ("filters", "limit"),
    [({"title": "x"}, 10), ({"status": {"$ne": 1}}, 10), ({}, 0), ({}, 201)],
)
def test_a_list_query_refuses_anything_but_known_string_filters_and_a_limit_in_range(
    filters: dict[str, Any], limit: int
) -> None:
    with pytest.raises(ValueError):
        ListQuery(filters, limit)


@given(st.dictionaries(st.sampled_from(sorted(FILTER_FIELDS)), st.text(min_size=1)))
def test_only_fixed_keys_reach_the_store_whatever_the_values(filters: dict[str, str]) -> None:
    out = store_filter(ListQuery(filters))
    assert set(out) <= set(FILTER_FIELDS.values())
    assert all(isinstance(v, str) for v in out.values())


def test_unknown_and_repeated_parameters_are_named() -> None:
    params = [("status", "open"), ("status", "done"), ("assignee[$ne]", "x"), ("limit", "3")]
    assert parameter_errors(params) == [
        {"field": "assignee[$ne]", "message": "unknown query parameter"},
        {"field": "status", "message": "given more than once"},
    ]
    assert parameter_errors([("tag", "a"), ("cursor", "c"), ("limit", "1")]) == []


def test_a_window_bounds_createdat_above_and_keeps_the_keyset_range() -> None:
    query = ListQuery({"status": "open"}, 10, Cursor(AT, ID, "0" * 16))
    bound = "2026-11-25T09:00:04.000Z"
    assert store_filter(query, before=bound) == {
        "status": "open",
        "createdAt": {"$gte": AT, "$lt": bound},
        "$or": [{"createdAt": {"$gt": AT}}, {"_id": {"$gt": ID}}],
    }
    assert store_filter(ListQuery(), before=bound) == {"createdAt": {"$lt": bound}}


def test_a_window_ends_in_the_read_models_format_or_not_at_all_past_the_clock() -> None:
    start = parse_timestamp(AT)
    assert start is not None
    now = start + timedelta(hours=1)
    assert window_end(start, FIRST_WINDOW, now) == "2026-11-25T09:00:04.000Z"
    assert window_end(start, timedelta(hours=1) + CLOCK_SKEW, now) == timestamp(now + CLOCK_SKEW)
    assert (
        window_end(start, timedelta(hours=1) + CLOCK_SKEW + timedelta(milliseconds=1), now) is None
    )
    assert window_end(start, timedelta.max, now) is None
    elsewhere = parse_timestamp("2026-11-25T11:00:00.000+02:00")  # a forged cursor's
    assert elsewhere is not None
    assert window_end(elsewhere, FIRST_WINDOW, now) == "2026-11-25T09:00:04.000Z"
    assert parse_timestamp("not a time") is None
    assert parse_timestamp("2026-11-25T09:00:00") is None  # no zone: not one of ours


@given(st.integers(1, 201), st.integers(0, 201))
def test_windows_grow_at_least_twice_and_at_most_max_growth(wanted: int, found: int) -> None:
    width = timedelta(seconds=4)
    grown = next_width(width, wanted, min(found, wanted - 1))
    assert 2 * width <= grown <= MAX_GROWTH * width


def test_every_query_reads_a_fixed_index() -> None:
    assert index_for(ListQuery()) == "list_order"
    assert index_for(ListQuery({"tag": "ops"})) == "list_order"
    assert index_for(ListQuery({"tag": "ops", "priority": "low"})) == "list_priority"
    assert index_for(ListQuery({"status": "open", "assignee": "ana"})) == "list_assignee"
    assert set(LIST_FILTER_INDEXES.values()) < set(LIST_INDEXES)
