"""The command API's input rules, pure: bodies, media types, headers, request models, ids."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.datastructures import Headers

from command_api.body import media_type_problem, parse_json_object
from command_api.headers import ANONYMOUS, write_headers
from command_api.payloads import create_payload, update_payload
from command_api.requests import (
    CreateActionItemRequest,
    UpdateActionItemRequest,
    merge_patch_violations,
)
from domain.commands import CommandEnvelope
from domain.identity import build_command, key_hash
from domain.limits import TITLE_PATTERN, trimmed_title
from servicekit.problems import Problem

ITEM = "0c0377a8-8dee-54d3-8e5b-7fabadddde0e"


def problem_of(raw: bytes) -> Problem:
    with pytest.raises(Problem) as caught:
        parse_json_object(raw)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b"{", 400, "body"),
        (b"", 400, "body"),
        (b"\xff\xfe{}", 400, "body"),
        ("\ufeff{}".encode(), 400, "body"),  # a BOM is not JSON text
        (b'{"title": NaN}', 400, "body"),
        (b'{"title": Infinity}', 400, "body"),
        (b'{"n": ' + b"1" * 5000 + b"}", 400, "body"),
        (b"[" * 60_000, 400, "body"),  # deeper than the parser's recursion limit
        (b"[1]", 422, "body"),
        (b'"x"', 422, "body"),
        (b"null", 422, "body"),
        (b'{"title": "a", "title": "b"}', 422, "title"),
        (b'{"tags": [{"x": 1, "x": 2}]}', 422, "x"),
        (b'{"title": "\\ud800"}', 422, "title"),
        (b'{"tags": ["ok", "\\udfff"]}', 422, "tags[1]"),
        (b'{"\\ud800x": 1}', 422, "\\ud800x"),
    ],
)
def test_bad_bodies_are_problems_that_name_the_part(raw: bytes, status: int, field: str) -> None:
    problem = problem_of(raw)
    assert problem.status == status
    assert problem.errors is not None
    assert problem.errors[0]["field"] == field
    # the answer must be encodable as UTF-8 JSON (a lone surrogate in it would be a 500)
    json.dumps(problem.body(), ensure_ascii=False).encode("utf-8")


def test_a_json_object_is_read_as_is() -> None:
    assert parse_json_object('{"title": "ünïcode 😀", "tags": []}'.encode()) == {
        "title": "ünïcode 😀",
        "tags": [],
    }


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/json; charset=latin-1", False),
        ("application/merge-patch+json", False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_create_takes_json_only(content_type: str, ok: bool) -> None:
    problem = media_type_problem(content_type, ("application/json",))
    assert (problem is None) is ok
    if problem is not None:
        assert problem.status == 415
        assert [e["field"] for e in problem.errors or []] == ["Content-Type"]


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.lower().encode(), v.encode("latin-1")) for k, v in pairs])


def test_write_headers_defaults() -> None:
    parsed = write_headers(headers(), conditional=True)
    assert parsed.client_id is None  # a label only: the caller is the token's sub
    assert parsed.idempotency_key is None
    assert parsed.expected_version is None
    assert len(parsed.correlation_id) == 36


@pytest.mark.parametrize(
    ("value", "expected"), [('"1"', 1), ('"42"', 42), ("*", None), (' "7" ', 7)]
)
def test_if_match_takes_one_strong_version_or_star(value: str, expected: int | None) -> None:
    parsed = write_headers(headers(("If-Match", value)), conditional=True)
    assert parsed.expected_version == expected


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        ((("If-Match", 'W/"1"'),), "If-Match"),
        ((("If-Match", '"0"'),), "If-Match"),
        ((("If-Match", '"01"'),), "If-Match"),
        ((("If-Match", "3"),), "If-Match"),
        ((("If-Match", '"1", "2"'),), "If-Match"),
        ((("If-Match", '"1"'), ("If-Match", '"2"')), "If-Match"),
        ((("Idempotency-Key", ""),), "Idempotency-Key"),
        ((("Idempotency-Key", "a b"),), "Idempotency-Key"),
        ((("Idempotency-Key", "k" * 256),), "Idempotency-Key"),
        ((("Idempotency-Key", "a"), ("Idempotency-Key", "b")), "Idempotency-Key"),
        ((("X-Client-Id", "caf\u00e9"),), "X-Client-Id"),
        ((("X-Client-Id", "a"), ("X-Client-Id", "a")), "X-Client-Id"),
        ((("X-Correlation-Id", "\t"),), "X-Correlation-Id"),
    ],
)
def test_bad_headers_are_400_naming_the_header(
    pairs: tuple[tuple[str, str], ...], field: str
) -> None:
    with pytest.raises(Problem) as caught:
        write_headers(headers(*pairs), conditional=True)
    assert caught.value.status == 400
    assert caught.value.errors is not None
    assert caught.value.errors[0]["field"] == field


def test_a_create_is_not_conditional() -> None:
    with pytest.raises(Problem) as caught:
        write_headers(headers(("If-Match", '"1"')), conditional=False)
    assert caught.value.status == 400


def test_title_length_counts_after_trimming() -> None:
    assert CreateActionItemRequest.model_validate({"title": "  " + "a" * 200 + " \n"}).title == (
        "a" * 200
    )
    for bad in ("a" * 201, "   ", "", "\u3000\u2003"):
        with pytest.raises(ValidationError):
            CreateActionItemRequest.model_validate({"title": bad})


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "dueDate": "2026-02-29"},
        {"title": "x", "dueDate": "2026-1-01"},
        {"title": "x", "dueDate": "20260101"},
        {"title": "x", "dueDate": "2026-W01-1"},
        {"title": "x", "dueDate": "\u0662\u0660\u0662\u0666-01-01"},  # Arabic-Indic digits
        {"title": "x", "dueDate": "2026-01-01\n"},
        {"title": "x", "dueDate": "0000-01-01"},
        {"title": "x", "tags": ["a", "a"]},
        {"title": "x", "tags": ["t"] * 21},
        {"title": "x", "tags": [""]},
        {"title": "x", "tags": ["t" * 51]},
        {"title": "x", "tags": "a"},
        {"title": "x", "tags": None},
        {"title": "x", "priority": "NORMAL"},
        {"title": "x", "priority": None},
        {"title": "x", "assignee": ""},
        {"title": "x", "assignee": "a" * 201},
        {"title": "x", "description": "d" * 10_001},
        {"title": 1},
        {"title": True},
        {"title": ["x"]},
        {"title": "x", "status": "open"},
        {"title": "x", "unknown": 1},
        {},
    ],
)
def test_invalid_creates_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateActionItemRequest.model_validate(body)


def test_limits_are_inclusive() -> None:
    body = CreateActionItemRequest.model_validate(
        {
            "title": "t" * 200,
            "description": "d" * 10_000,
            "assignee": "a" * 200,
            "tags": [f"{i:02d}" + "x" * 48 for i in range(20)],
            "dueDate": "2028-02-29",
            "priority": "urgent",
        }
    )
    assert len(body.tags) == 20


@pytest.mark.parametrize(
    ("patch", "fields"),
    [
        ({}, ["body"]),
        ({"title": None}, ["title"]),
        ({"priority": None, "status": None}, ["priority", "status"]),
        ({"tags": None}, ["tags"]),
    ],
)
def test_merge_patch_violations(patch: dict[str, object], fields: list[str]) -> None:
    assert [v["field"] for v in merge_patch_violations(patch)] == fields


def test_a_patch_clears_with_null_and_keeps_what_it_does_not_name() -> None:
    body = UpdateActionItemRequest.model_validate(
        {"description": None, "assignee": None, "dueDate": None, "status": "done"}
    )
    assert body.model_fields_set == {"description", "assignee", "dueDate", "status"}
    payload = update_payload(body)
    assert payload.changes() == {
        "description": None,
        "assignee": None,
        "dueDate": None,
        "status": "done",
    }


def test_the_patch_schema_says_what_cannot_be_null() -> None:
    schema = UpdateActionItemRequest.model_json_schema()
    assert schema["minProperties"] == 1
    assert schema["additionalProperties"] is False
    for name in ("title", "tags"):
        assert schema["properties"][name]["type"] != "null"
        assert "anyOf" not in schema["properties"][name]
    assert {"type": "null"} in schema["properties"]["description"]["anyOf"]
    assert schema["properties"]["tags"]["uniqueItems"] is True


def draft(caller: str = "c", key: str | None = "k", title: str = "x") -> CommandEnvelope:
    body = CreateActionItemRequest.model_validate({"title": title})
    return build_command(
        create_payload(body),
        action_item_id=None,
        caller=caller,
        idempotency_key=key,
        expected_version=None,
        correlation_id="corr",
    )


def test_ids_are_deterministic_per_caller_key_and_payload() -> None:
    a, b = draft(), draft()
    assert (a.command_id, a.action_item_id) == (b.command_id, b.action_item_id)
    other_payload = draft(title="y")
    assert other_payload.command_id != a.command_id
    assert other_payload.action_item_id == a.action_item_id
    other_caller = draft(caller="d")
    assert other_caller.command_id != a.command_id
    assert other_caller.action_item_id != a.action_item_id
    assert a.idempotency_key_hash == key_hash("c", "k")
    assert (a.caller, a.client_id) == ("c", None)
    unkeyed = draft(key=None), draft(key=None)
    assert unkeyed[0].command_id != unkeyed[1].command_id


def test_an_update_command_carries_if_match_and_the_item() -> None:
    body = UpdateActionItemRequest.model_validate({"status": "done"})
    command = build_command(
        update_payload(body),
        action_item_id=ITEM,
        caller=ANONYMOUS,
        idempotency_key=None,
        expected_version=3,
        correlation_id="corr",
    )
    assert command.action_item_id == ITEM
    assert command.expected_version == 3
    assert command.kind == "update"
    assert command.accepted_at.microsecond % 1000 == 0  # Avro timestamp-millis


@settings(max_examples=500, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            [chr(c) for c in range(0x110000) if chr(c).isspace()] + ["a", "\x00", "\ufeff", "é"]
        ),
        max_size=205,
    )
)
def test_the_published_title_pattern_is_the_trimming_rule(title: str) -> None:
    """OpenAPI's title pattern accepts exactly the titles trimmed_title accepts."""
    try:
        trimmed_title(title)
        accepted = True
    except ValueError:
        accepted = False
    assert bool(re.search(TITLE_PATTERN, title)) == accepted
