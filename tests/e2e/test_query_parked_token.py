"""Reading your own write when the store refuses it: a parked command is not read as applied.

A unique index on ``title`` that the read model does not expect makes the store
refuse one item's write for real, so the projector parks that item
(projector/parking.py) while the partition's position moves past its command.
The 202's Consistency-Token of that command must not answer with the stale
item (or a list without the change) after the bounded wait, nor its status claim
it was applied; once an operator removes the cause and releases the item, the
same token answers with the effect. Other items of the partition read at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from servicekit.consistency import ConsistencyToken
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem
from tests.support import services
from tests.support.auth import caller_headers
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=caller_headers("anonymous"), timeout=30) as client:
        yield client


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    return dict(response.json())


def token(body: dict[str, Any]) -> dict[str, str]:
    return {"Consistency-Token": body["consistencyToken"]}


def partition_of(body: dict[str, Any]) -> int:
    return ConsistencyToken.decode(body["consistencyToken"]).partition


def release(system: RunningSystem, item: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "projector.cli", "release", item, "--wait", "30"],
        env={**os.environ, **system.stack.env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def assert_parked_503(response: httpx.Response, command_id: str) -> None:
    assert response.status_code == 503, response.text  # not the stale item, not a 200
    assert response.headers["Retry-After"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["commandId"] == command_id
    assert "refused" in body["detail"], body
    assert "test_unique_title" not in response.text  # the store's text stays in the logs


def test_a_parked_command_s_token_waits_for_its_release(
    system: RunningSystem, http: httpx.Client, mongo: StoreClient
) -> None:
    c, q = system.command_url, system.query_url
    port = services.free_port()
    bounded = services.query_api_process(
        {**system.stack.env, "CONSISTENCY_WAIT_SECONDS": "1", "RETRY_AFTER_SECONDS": "1"},
        port,
        system.stack.log_dir,
    ).start()
    b = f"http://127.0.0.1:{port}"
    try:
        first = accepted(http.post(f"{c}/action-items", json={"title": "same title"}))
        owner = {"assignee": "parked-owner"}
        second = accepted(http.post(f"{c}/action-items", json={"title": "other", **owner}))
        item = second["actionItemId"]
        for body in (first, second):
            assert (
                http.get(f"{q}/commands/{body['commandId']}", headers=token(body)).json()["status"]
                == "applied"
            )
        model = active_read_model(mongo[system.stack.settings.mongodb_database])
        model.items.create_index("title", unique=True, name="test_unique_title")

        # the store refuses this change for real: the item is parked, the partition goes on
        refused = accepted(http.patch(f"{c}/action-items/{item}", json={"title": "same title"}))
        wait_until(lambda: model.parked_items.find_one({"_id": item}), 30, "the item to be parked")
        # another item of the parked item's partition is written after it and read with its
        # token at once: the partition's position is now past the parked command
        neighbour = None
        for n in range(60):
            created = accepted(http.post(f"{c}/action-items", json={"title": f"neighbour {n}"}))
            if partition_of(created) == partition_of(refused):
                neighbour = (created, f"neighbour {n}")
                break
        assert neighbour is not None, "no item landed on the parked item's partition"
        created, title = neighbour
        read = http.get(f"{b}/action-items/{created['actionItemId']}", headers=token(created))
        assert read.status_code == 200, read.text
        assert read.json()["title"] == title
        parked_at = ConsistencyToken.decode(refused["consistencyToken"])
        position = model.positions.find_one({"partition": parked_at.partition})
        assert position is not None and position["nextOffset"] > parked_at.offset, position

        # yet the parked command's token does not answer without its effect
        item_url = f"/action-items/{item}"
        assert_parked_503(http.get(f"{b}{item_url}", headers=token(refused)), refused["commandId"])
        listed = http.get(f"{b}/action-items", params=owner, headers=token(refused))
        assert_parked_503(listed, refused["commandId"])
        history = http.get(f"{b}{item_url}/exceptions", headers=token(refused))
        assert_parked_503(history, refused["commandId"])
        status = http.get(f"{b}/commands/{refused['commandId']}", headers=token(refused))
        assert_parked_503(status, refused["commandId"])
        # (its status may be stored already: decided, not applied; no status claims it)
        plain = http.get(f"{q}/commands/{refused['commandId']}")
        assert plain.status_code == 404, plain.text
        # without a token the stale item is what there is, and its version says so
        assert http.get(f"{q}{item_url}").json()["version"] == 1

        # the operator removes the cause and releases the item (or the timed retry does)
        model.items.drop_index("test_unique_title")
        done = release(system, item)
        assert done.returncode in (0, 2), done.stdout + done.stderr
        wait_until(lambda: model.parked_items.find_one({"_id": item}) is None, 30, "the release")
        read = http.get(f"{q}{item_url}", headers=token(refused))
        assert read.status_code == 200, read.text
        assert (read.json()["title"], read.json()["version"]) == ("same title", 2)
        listed = http.get(f"{q}/action-items", params=owner, headers=token(refused))
        assert [(i["id"], i["title"]) for i in listed.json()["items"]] == [(item, "same title")]
        status = http.get(f"{q}/commands/{refused['commandId']}", headers=token(refused))
        assert status.json()["status"] == "applied", status.text
    finally:
        bounded.stop()
