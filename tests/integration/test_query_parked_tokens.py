"""Read-your-writes past a parked item, in process on the real store.

A parked item (projector/parking.py) is one whose write the store refused: its
commands wait in the store, and the partition's position moves past them as the
other items go on. The rows here are the ones the projector writes when it parks
(``parked_items``: one per item, at its first parked record) and the status it
stores before the refused item write; the end-to-end version, with a real refusal,
is tests/e2e/test_query_parked_token.py.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from query_api.app import create_app
from query_api.settings import QueryApiSettings
from servicekit.consistency import ConsistencyToken
from servicekit.read_model import ReadModel, active_read_model
from servicekit.store_types import StoreClient
from tests.support.auth import caller_headers
from tests.support.query_data import CommandLog, document, item, listening_client, seed
from tests.support.waiting import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

PARTITION = 3
REFUSAL = "E11000 duplicate key error index: test_secret_index"


@dataclass
class Api:
    http: TestClient
    log: CommandLog
    model: ReadModel


def app(mongodb_uri: str, db_name: str, wait: float, log: CommandLog) -> TestClient:
    settings = QueryApiSettings(
        mongodb_uri=mongodb_uri, mongodb_database=db_name, consistency_wait_seconds=wait
    )
    return TestClient(
        create_app(settings, listening_client(mongodb_uri, log)),
        headers=caller_headers("anonymous"),
    )


@pytest.fixture
def api(mongodb_uri: str, mongo: StoreClient) -> Iterator[Api]:
    db_name = f"test_query_parked_{uuid.uuid4().hex[:10]}"
    log = CommandLog()
    try:
        with app(mongodb_uri, db_name, 0.5, log) as http:
            yield Api(http, log, active_read_model(mongo[db_name]))
    finally:
        mongo.drop_database(db_name)


def park(model: ReadModel, item_id: str, command_id: str, offset: int) -> None:
    """What the projector stores when it parks an item at ``offset`` (projector/parking.py)."""
    model.parked_commands.insert_one(
        {
            "_id": f"{PARTITION}:{offset}",
            "itemId": item_id,
            "partition": PARTITION,
            "offset": offset,
            "key": b"k",
            "value": b"v",
        }
    )
    model.parked_items.insert_one(
        {
            "_id": item_id,
            "partition": PARTITION,
            "offset": offset,
            "commandId": command_id,
            "attempts": 1,
            "retryAt": time.time() + 600,
            "parkedAt": time.time(),
            "error": REFUSAL,
        }
    )


def release(model: ReadModel, item_id: str) -> None:
    """What a successful retry leaves: the records, then the item, removed."""
    model.parked_commands.delete_many({"itemId": item_id})
    model.parked_items.delete_one({"_id": item_id})


def status(command_id: str, item_id: str, offset: int) -> dict[str, Any]:
    """The status the projector stores before the item write the store then refuses."""
    return {
        "_id": command_id,
        "commandId": command_id,
        "actionItemId": item_id,
        "status": "applied",
        "exception": None,
        "processedAt": "2026-11-25T09:00:00.000Z",
        "partition": PARTITION,
        "offset": offset,
    }


def header(command_id: str, offset: int) -> dict[str, str]:
    return {"Consistency-Token": ConsistencyToken(command_id, PARTITION, offset).encode()}


def parked_reads(log: CommandLog) -> int:
    return sum(
        1
        for name, command in list(log.commands)
        if name == "find" and str(command.get("find", "")).startswith("parked_items")
    )


def assert_parked_503(response: Any, command_id: str) -> str:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["commandId"] == command_id
    assert "not processed yet" in body["detail"] and "refused" in body["detail"], body
    # the store's own text (index names, error codes) stays in the projector's log
    assert "test_secret_index" not in response.text and "E11000" not in response.text
    return str(body["detail"])


def test_a_parked_command_is_not_read_as_applied_until_its_item_is_released(api: Api) -> None:
    model = api.model
    stale = item(title="before", assignee="parked-owner")
    neighbour = item(title="neighbour", assignee="parked-owner")
    seed(model.db, [stale, neighbour])
    parked_cmd, later_cmd, earlier_cmd = (str(uuid.uuid4()) for _ in range(3))
    # the projector went on past the parked command (offset 50) with the partition's others
    model.positions.insert_one({"_id": str(PARTITION), "partition": PARTITION, "nextOffset": 100})
    model.commands.insert_one(status(parked_cmd, stale.id, 50))
    park(model, stale.id, parked_cmd, 50)
    token = header(parked_cmd, 50)
    item_url = f"/action-items/{stale.id}"

    detail = assert_parked_503(api.http.get(item_url, headers=token), parked_cmd)
    assert "this ActionItem" in detail
    assert_parked_503(api.http.get(f"{item_url}/exceptions", headers=token), parked_cmd)
    listed = api.http.get("/action-items", params={"assignee": "parked-owner"}, headers=token)
    assert "changed before it" in assert_parked_503(listed, parked_cmd)
    # its decision is stored, its effect is not: no status claims it
    assert_parked_503(api.http.get(f"/commands/{parked_cmd}", headers=token), parked_cmd)
    plain = api.http.get(f"/commands/{parked_cmd}")
    assert plain.status_code == 404, plain.text
    assert "refused" in plain.json()["detail"] and "E11000" not in plain.text

    # a later command of the partition: its own item reads at once, a list waits for the
    # parked one before it; a token from before the parked command is not held by it
    later = header(later_cmd, 60)
    assert api.http.get(f"/action-items/{neighbour.id}", headers=later).status_code == 200
    assert_parked_503(api.http.get("/action-items", headers=later), later_cmd)
    assert api.http.get("/action-items", headers=header(earlier_cmd, 40)).status_code == 200
    assert api.http.get(item_url, headers=header(earlier_cmd, 40)).json()["title"] == "before"
    assert 'query_api_consistency_waits_total{outcome="parked"}' in api.http.get("/metrics").text

    # released: the effect is stored, then the parked rows go; the same token answers with it
    model.items.replace_one({"_id": stale.id}, document(item(item_id=stale.id, title="after")))
    release(model, stale.id)
    read = api.http.get(item_url, headers=token)
    assert read.status_code == 200, read.text
    assert read.json()["title"] == "after"
    listed = api.http.get("/action-items", params={"assignee": "parked-owner"}, headers=token)
    assert listed.status_code == 200, listed.text
    assert api.http.get(f"/commands/{parked_cmd}", headers=token).json()["status"] == "applied"


def test_the_parked_check_is_one_query_and_only_for_a_token(api: Api) -> None:
    item_id = str(uuid.uuid4())
    seed(api.model.db, [item(item_id=item_id)])
    api.model.positions.insert_one(
        {"_id": str(PARTITION), "partition": PARTITION, "nextOffset": 10}
    )
    api.log.clear()
    for _ in range(5):
        api.http.get(f"/action-items/{item_id}")
        api.http.get("/action-items?limit=1")
    assert parked_reads(api.log) == 0, "a read without a token must not look for parked items"
    token = header(str(uuid.uuid4()), 5)
    for n, url in enumerate((f"/action-items/{item_id}", "/action-items?limit=1"), start=1):
        assert api.http.get(url, headers=token).status_code == 200
        assert parked_reads(api.log) == n, "one parked-items query per satisfied token read"
    # ... and it goes by the index on (partition, offset)
    assert "by_position" in api.model.parked_items.index_information()


def test_a_waiting_read_answers_once_the_item_is_released(
    mongodb_uri: str, mongo: StoreClient
) -> None:
    db_name = f"test_query_parked_{uuid.uuid4().hex[:10]}"
    log = CommandLog()
    try:
        with app(mongodb_uri, db_name, 30, log) as http:
            model = active_read_model(mongo[db_name])
            state = item(title="before")
            seed(model.db, [state])
            command_id = str(uuid.uuid4())
            model.positions.insert_one(
                {"_id": str(PARTITION), "partition": PARTITION, "nextOffset": 8}
            )
            park(model, state.id, command_id, 7)
            with ThreadPoolExecutor(max_workers=1) as pool:
                waiting = pool.submit(
                    http.get, f"/action-items/{state.id}", headers=header(command_id, 7)
                )
                wait_until(lambda: parked_reads(log) >= 2, 20, "the read to recheck the parking")
                assert not waiting.done(), waiting.result().text
                model.items.replace_one(
                    {"_id": state.id}, document(item(item_id=state.id, title="after"))
                )
                release(model, state.id)
                answer = waiting.result(timeout=40)
            assert answer.status_code == 200, answer.text
            assert answer.json()["title"] == "after"
    finally:
        mongo.drop_database(db_name)
