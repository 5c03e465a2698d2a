"""An Idempotency-Key reused by one caller on another item (issue 16), through the processes.

The projector keeps a claim per (caller's key, partition): the first applied
command with the key owns it, and another command with that key on any item of
the same partition is rejected with IDEMPOTENCY_KEY_REUSED. Across partitions
there is no common order to say which use came first, so that case is not
decided (docs/projector.md, "Idempotency-Key claims"): it is applied, in the
live model and in a replay alike.
"""

from __future__ import annotations

from typing import Any

import httpx

from schemas.partitioning import partition_for
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem
from tests.support.auth import caller_headers
from tests.support.projector_log import read_log
from tests.support.projector_model import differences, fold_log, read_stored


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_a_key_reused_on_another_item_of_the_partition_is_rejected(
    system: RunningSystem, mongo: StoreClient
) -> None:
    settings = system.stack.settings
    n = settings.commands_partitions
    commands = httpx.Client(headers=caller_headers("kim"), base_url=system.command_url, timeout=10)
    queries = httpx.Client(headers=caller_headers("kim"), base_url=system.query_url, timeout=10)
    by_partition: dict[int, list[str]] = {}
    while not any(len(v) >= 2 for v in by_partition.values()) or len(by_partition) < 2:
        item = accepted(commands.post("/action-items", json={"title": "t"}))["actionItemId"]
        by_partition.setdefault(partition_for(item, n), []).append(item)
    same = next(v for v in by_partition.values() if len(v) >= 2)
    first, neighbour = same[0], same[1]
    elsewhere = next(v[0] for p, v in by_partition.items() if p != partition_for(first, n))

    def patch(item: str, body: dict[str, Any]) -> dict[str, Any]:
        return accepted(
            commands.patch(f"/action-items/{item}", json=body, headers={"Idempotency-Key": "k-9"})
        )

    owner = patch(first, {"title": "mine"})
    reused = patch(neighbour, {"title": "not mine"})
    across = patch(elsewhere, {"title": "other partition"})
    retry = patch(first, {"title": "mine"})  # the same request again: the same command
    assert retry["commandId"] == owner["commandId"]

    def status(answer: dict[str, Any]) -> dict[str, Any]:
        response = queries.get(
            f"/commands/{answer['commandId']}",
            headers={"Consistency-Token": answer["consistencyToken"]},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert status(owner)["status"] == "applied"
    assert status(retry)["status"] == "applied"  # (and the projector is past the retry)
    refused = status(reused)
    assert refused["status"] == "rejected"
    assert refused["exception"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert owner["commandId"] in refused["exception"]["message"]
    assert status(across)["status"] == "applied"  # the documented limit
    item = queries.get(
        f"/action-items/{neighbour}", headers={"Consistency-Token": reused["consistencyToken"]}
    ).json()
    assert item["title"] == "t" and item["exceptionCount"] == 1
    assert item["exceptions"][0]["commandId"] == reused["commandId"]
    history = queries.get(f"/action-items/{neighbour}/exceptions").json()
    assert history == {"items": item["exceptions"], "nextCursor": None}

    db = mongo[settings.mongodb_database]
    log = read_log(settings.kafka_bootstrap_servers, settings.commands_topic, n)
    assert differences(fold_log(log), read_stored(db)) == []
