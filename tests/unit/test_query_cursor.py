"""The list cursor: round trip, binding to filters, and nothing but BadCursor for garbage."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.rules import timestamp
from query_api.cursor import BadCursor, Cursor, filters_digest
from tests.support.query_data import T0

ID = "6f1c2a9e-3b4d-4c5e-8f70-123456789abc"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_round_trip_of_a_read_model_timestamp_and_id() -> None:
    cursor = Cursor(timestamp(T0), ID, filters_digest({"status": "open"}))
    text = cursor.encode()
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert Cursor.decode(text) == cursor


def test_the_digest_ignores_filter_order_but_not_values() -> None:
    a = filters_digest({"status": "open", "tag": "ops"})
    assert a == filters_digest({"tag": "ops", "status": "open"})
    assert a != filters_digest({"status": "open", "tag": "ui"})
    assert a != filters_digest({"status": "open"})


def test_a_cursor_is_bound_to_its_filters() -> None:
    cursor = Cursor(timestamp(T0), ID, filters_digest({"status": "open"}))
    cursor.check_filters({"status": "open"})
    with pytest.raises(BadCursor):
        cursor.check_filters({"status": "done"})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "!!!",
        "A" * 201,
        _b64(b"not json"),
        _b64(b'{"a":1,"b":2,"c":3}'),
        _b64(b'"abc"'),
        _b64(b"[1,2,3]"),
        _b64(json.dumps(["2026-11-25T09:00:00.000Z", ID]).encode()),
        _b64(json.dumps([{"$gt": ""}, ID, "0" * 16]).encode()),
        _b64(json.dumps(["2026-11-25T09:00:00.000Z", ID.upper(), "0" * 16]).encode()),
        _b64(json.dumps(["2026-11-25 09:00", ID, "0" * 16]).encode()),
        _b64(json.dumps(["2026-11-25T09:00:00.000Z", ID, "xyz"]).encode()),
        _b64(b"\xff\xfe"),
    ],
)
def test_malformed_cursors_are_rejected(text: str) -> None:
    with pytest.raises(BadCursor):
        Cursor.decode(text)


@given(st.text(max_size=300))
def test_any_text_decodes_or_raises_bad_cursor(text: str) -> None:
    try:
        cursor = Cursor.decode(text)
    except BadCursor:
        return
    assert Cursor.decode(cursor.encode()) == cursor


@given(st.binary(max_size=150))
def test_any_base64_payload_decodes_or_raises_bad_cursor(raw: bytes) -> None:
    with contextlib.suppress(BadCursor):
        Cursor.decode(_b64(raw))
