"""The query API's HTTP surface in process, on the real store: shapes, ETags, problems, metrics.

A pymongo command listener on the app's own client records every command that
reaches the store, so "rejected before the store" is observed, not assumed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from query_api.app import create_app
from query_api.settings import QueryApiSettings
from servicekit.consistency import ConsistencyToken
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.support.auth import caller_headers
from tests.support.query_data import CommandLog, document, item, listening_client, seed
from tests.support.services import free_port
from tests.support.waiting import wait_until

with warnings.catch_warnings():
    # Starlette asks to move its TestClient to httpx2, which this project does not install.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


@dataclass
class Api:
    http: TestClient
    log: CommandLog
    db_name: str
    poll_seconds: float  # the watcher's interval between position reads


@pytest.fixture(scope="module")
def api(mongodb_uri: str, mongo: StoreClient) -> Iterator[Api]:
    """One app and database for the module: tests use fresh ids and clear the command log."""
    db_name = f"test_query_{uuid.uuid4().hex[:10]}"
    log = CommandLog()
    settings = QueryApiSettings(
        mongodb_uri=mongodb_uri, mongodb_database=db_name, consistency_wait_seconds=0.5
    )
    with TestClient(
        create_app(settings, listening_client(mongodb_uri, log)),
        headers=caller_headers("anonymous"),
    ) as http:
        yield Api(http, log, db_name, settings.position_poll_seconds)
    mongo.drop_database(db_name)


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def test_an_item_is_its_public_document_with_the_version_as_etag(
    api: Api, mongo: StoreClient
) -> None:
    state = item(assignee="ana", tags=["ops", "ui"], version=3, exceptions=1)
    seed(mongo[api.db_name], [state])
    response = api.http.get(f"/action-items/{state.id}")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"3"'
    stored = document(state)
    assert response.json() == {
        "id": state.id,
        **{k: v for k, v in stored.items() if not k.startswith("_")},
    }
    assert set(response.json()) == {
        "id", "title", "description", "assignee", "priority", "dueDate", "tags", "status",
        "version", "createdAt", "updatedAt", "exceptions", "exceptionCount",
    }  # fmt: skip
    assert set(response.json()["exceptions"][0]) == {
        "commandId", "code", "message", "occurredAt", "partition", "offset", "correlationId",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [('"2"', 304), ('W/"2"', 304), ('"1", "2"', 304), ("*", 304), ('"1"', 200), ('"22"', 200)],
)
def test_if_none_match_answers_304_only_for_the_current_version(
    api: Api, mongo: StoreClient, if_none_match: str, status: int
) -> None:
    state = item(version=2)
    seed(mongo[api.db_name], [state])
    response = api.http.get(f"/action-items/{state.id}", headers={"If-None-Match": if_none_match})
    assert response.status_code == status
    assert response.headers["ETag"] == '"2"'
    if status == 304:
        assert response.content == b""


def test_unknown_item_and_unknown_command_are_404_problems(api: Api) -> None:
    assert_problem(api.http.get(f"/action-items/{uuid.uuid4()}"), 404)
    assert_problem(api.http.get(f"/commands/{uuid.uuid4()}"), 404)


def test_a_command_status_is_its_public_document(api: Api, mongo: StoreClient) -> None:
    command_id, item_id = str(uuid.uuid4()), str(uuid.uuid4())
    exception = {
        "commandId": command_id,
        "code": "INVALID_TRANSITION",
        "message": "status cannot change from done to in_progress",
        "occurredAt": "2026-11-25T09:00:00.000Z",
        "partition": 2,
        "offset": 41,
        "correlationId": "corr-41",
    }
    active_read_model(mongo[api.db_name]).commands.insert_one(
        {
            "_id": command_id,
            "commandId": command_id,
            "actionItemId": item_id,
            "status": "rejected",
            "exception": exception,
            "processedAt": "2026-11-25T09:00:00.000Z",
            "partition": 2,
            "offset": 41,
        }
    )
    response = api.http.get(f"/commands/{command_id}")
    assert response.status_code == 200
    assert response.json() == {
        "commandId": command_id,
        "actionItemId": item_id,
        "status": "rejected",
        "exception": exception,
        "processedAt": "2026-11-25T09:00:00.000Z",
    }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token(**fields: object) -> str:
    return _b64(json.dumps(fields).encode())


GOOD_ID = str(uuid.uuid4())
BAD_REQUESTS: list[tuple[str, dict[str, str], int, str | None]] = [
    # (url, headers, status, field named in errors)
    ("/action-items/not-a-uuid", {}, 422, "actionItemId"),
    ("/action-items/%24ne", {}, 422, "actionItemId"),
    ("/commands/123", {}, 422, "commandId"),
    ("/action-items?limit=0", {}, 422, "limit"),
    ("/action-items?limit=201", {}, 422, "limit"),
    ("/action-items?limit=abc", {}, 422, "limit"),
    ("/action-items?limit=", {}, 422, "limit"),
    ("/action-items?limit=1.5", {}, 422, "limit"),
    ("/action-items?status=bogus", {}, 422, "status"),
    ("/action-items?status=OPEN", {}, 422, "status"),
    ("/action-items?priority=highest", {}, 422, "priority"),
    ("/action-items?assignee=", {}, 422, "assignee"),
    ("/action-items?assignee=" + "a" * 201, {}, 422, "assignee"),
    ("/action-items?tag=" + "t" * 51, {}, 422, "tag"),
    ("/action-items?assignee[$ne]=x", {}, 422, "assignee[$ne]"),
    ("/action-items?status[$ne]=open", {}, 422, "status[$ne]"),
    ("/action-items?$where=1", {}, 422, "$where"),
    ('/action-items?status={"$ne":1}', {}, 422, "status"),
    ('/action-items?priority={"$gt":""}', {}, 422, "priority"),
    ("/action-items?status=open&status=done", {}, 422, "status"),
    ("/action-items?tag=a&tag=b", {}, 422, "tag"),
    ("/action-items?limit=5&limit=6", {}, 422, "limit"),
    ("/action-items?sort=title", {}, 422, "sort"),
    ("/action-items?cursor=", {}, 400, "cursor"),
    ("/action-items?cursor=not*base64", {}, 400, "cursor"),
    ("/action-items?cursor=" + _b64(b'{"$gt":""}'), {}, 400, "cursor"),
    ("/action-items?cursor=" + _b64(b'[{"$gt":""},"x","0000000000000000"]'), {}, 400, "cursor"),
    (
        "/action-items?cursor=" + _b64(b'["2026","not-a-uuid","0000000000000000"]'),
        {},
        400,
        "cursor",
    ),
    ("/action-items?cursor=" + "A" * 1000, {}, 400, "cursor"),
    (f"/action-items/{GOOD_ID}", {"Consistency-Token": "garbage"}, 400, "Consistency-Token"),
    (f"/action-items/{GOOD_ID}", {"Consistency-Token": _token(c=GOOD_ID, p=-1, o=3)}, 400, None),
    (f"/action-items/{GOOD_ID}", {"Consistency-Token": _token(c=GOOD_ID, p="0", o=3)}, 400, None),
    (f"/commands/{GOOD_ID}", {"Consistency-Token": _token(c="x", p=0, o=3)}, 400, None),
    ("/action-items", {"Consistency-Token": _token(c={"$ne": 1}, p=0, o=3)}, 400, None),
    ("/action-items", {"Consistency-Token": "x" * 5000}, 400, None),
]


@pytest.mark.parametrize(("url", "headers", "status", "field"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_problem_and_nothing_reaches_the_store(
    api: Api, url: str, headers: dict[str, str], status: int, field: str | None
) -> None:
    api.http.get("/action-items")  # warm up: the generation pointer and indexes are known
    api.log.clear()
    body = assert_problem(api.http.get(url, headers=headers), status, field)
    assert "Traceback" not in json.dumps(body)
    assert api.log.reads() == [], "an invalid request reached the store"


def test_a_cursor_from_other_filters_is_rejected(api: Api, mongo: StoreClient) -> None:
    seed(mongo[api.db_name], [item(status="open") for _ in range(3)])
    first = api.http.get("/action-items", params={"status": "open", "limit": 1}).json()
    cursor = first["nextCursor"]
    assert cursor is not None
    assert (
        api.http.get("/action-items", params={"status": "open", "cursor": cursor}).status_code
        == 200
    )
    response = api.http.get("/action-items", params={"status": "done", "cursor": cursor})
    assert_problem(response, 400, "cursor")


def test_operator_looking_values_are_plain_strings_matched_exactly(
    api: Api, mongo: StoreClient
) -> None:
    """assignee='{"$ne":null}' is a legal assignee name: it matches only that name, never acts."""
    odd = item(assignee='{"$ne":null}', tags=["$gt"])
    seed(mongo[api.db_name], [odd, item(assignee="ana", tags=["ops"])])
    api.log.clear()
    for params in ({"assignee": '{"$ne":null}'}, {"tag": "$gt"}):
        items = api.http.get("/action-items", params=params).json()["items"]
        assert [i["id"] for i in items] == [odd.id], params
    assert api.http.get("/action-items", params={"assignee": "$ne"}).json()["items"] == []
    filters = [c["filter"] for c in api.log.reads() if c.get("find", "").startswith("action_items")]
    # sent as a string value, under a fixed key (next to the list window's createdAt range)
    assert any(f.get("assignee") == '{"$ne":null}' for f in filters), filters


def test_a_token_past_the_bound_is_503_with_retry_after(api: Api) -> None:
    token = ConsistencyToken(str(uuid.uuid4()), 0, 10**9).encode()
    response = api.http.get(f"/action-items/{uuid.uuid4()}", headers={"Consistency-Token": token})
    body = assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    assert body["commandId"]


def test_latency_histogram_per_route_template(api: Api) -> None:
    item_id = uuid.uuid4()
    api.http.get(f"/action-items/{item_id}")
    api.http.get("/action-items?limit=2")
    api.http.get(f"/commands/{item_id}")
    text = api.http.get("/metrics").text
    for route, status in (
        ("/action-items/{actionItemId}", "404"),
        ("/action-items", "200"),
        ("/commands/{commandId}", "404"),
    ):
        labels = f'le="0.005",method="GET",route="{route}",status="{status}"'
        assert f"query_api_request_seconds_bucket{{{labels}}}" in text, route
    assert str(item_id) not in text, "raw paths must not become label values"


def test_store_down_gives_503_problems_and_readyz_names_the_store() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}"  # nothing listens there
    settings = QueryApiSettings(mongodb_uri=uri, mongodb_database="unused", mongodb_timeout_ms=300)
    with TestClient(create_app(settings), headers=caller_headers("anonymous")) as http:
        assert http.get("/healthz").status_code == 200
        body = assert_problem(http.get("/readyz"), 503)
        assert body["down"] == ["store"]
        response = http.get(f"/action-items/{uuid.uuid4()}")
        assert_problem(response, 503)
        assert response.headers["Retry-After"]
        # no host name, port or driver text reaches a client
        assert "127.0.0.1" not in response.text and "Topology" not in response.text
        assert_problem(http.get("/action-items"), 503)


def test_readyz_when_the_store_answers(api: Api) -> None:
    assert api.http.get("/readyz").json() == {"status": "ready"}


def position_reads(log: CommandLog) -> int:
    return sum(
        1
        for name, command in list(log.commands)
        if name == "find" and str(command.get("find", "")).startswith("projector_positions")
    )


def test_token_waits_share_one_poller_and_nothing_polls_when_nobody_waits(api: Api) -> None:
    for clear_first in (False, True):  # the first round lets any earlier poll finish
        if clear_first:
            api.log.clear()
        for _ in range(20):
            api.http.get("/action-items?limit=1")
            api.http.get(f"/action-items/{uuid.uuid4()}")
    assert position_reads(api.log) == 0, "requests without a token must not read positions"

    token = {"Consistency-Token": ConsistencyToken(str(uuid.uuid4()), 0, 10**9).encode()}
    api.log.clear()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(lambda _: api.http.get(f"/commands/{uuid.uuid4()}", headers=token), range(20))
        )
    waited = time.monotonic() - started
    assert [a.status_code for a in answers] == [503] * 20
    # one poller for all 20 waiters: at most one read per interval, not 20 times that
    reads = position_reads(api.log)
    assert 0 < reads <= waited / api.poll_seconds + 5, (reads, waited, api.poll_seconds)


def test_waiters_are_woken_when_the_projector_reaches_their_position(
    mongodb_uri: str, mongo: StoreClient
) -> None:
    db_name = f"test_query_{uuid.uuid4().hex[:10]}"
    settings = QueryApiSettings(
        mongodb_uri=mongodb_uri, mongodb_database=db_name, consistency_wait_seconds=20
    )
    state = item()
    log = CommandLog()
    try:
        with TestClient(
            create_app(settings, listening_client(mongodb_uri, log)),
            headers=caller_headers("anonymous"),
        ) as http:
            token = {"Consistency-Token": ConsistencyToken(str(uuid.uuid4()), 1, 41).encode()}
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                waiting = [
                    pool.submit(http.get, f"/action-items/{state.id}", headers=token)
                    for _ in range(8)
                ]
                wait_until(
                    lambda: position_reads(log) > 0, 10, "the waiters to poll positions", 0.01
                )
                # the item and then the position arrive as the projector writes them
                model = seed(mongo[db_name], [state])
                model.positions.insert_one({"_id": "1", "partition": 1, "nextOffset": 42})
                answers = [w.result() for w in waiting]
            assert [a.status_code for a in answers] == [200] * 8
            assert time.monotonic() - started < 10, "waiters were not woken"
    finally:
        mongo.drop_database(db_name)
