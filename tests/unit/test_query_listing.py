"""The list query: parameter checks and the store filter it becomes (pure)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from query_api.cursor import Cursor
from query_api.listing import (
    FILTER_FIELDS,
    ListQuery,
    after_position,
    parameter_errors,
    store_filter,
)

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
