"""Every rejection code through the real processes: the right Exceptions entry, nothing else.

Writers go through the command API (HTTP, Kafka), readers through the query API;
the one command no HTTP request can produce (a second create of an existing
id) is put on the log directly, as a misbehaving writer would.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from domain.commands import CommandEnvelope, CreateActionItem
from servicekit.consistency import ConsistencyToken
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem
from tests.support.auth import caller_headers
from tests.support.projector_log import produce_one, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import metric_values, wait_until


def write(
    client: httpx.Client,
    method: str,
    path: str,
    body: dict[str, Any],
    **headers: str,
) -> dict[str, Any]:
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 202, response.text
    return dict(response.json())


def position(accepted: dict[str, Any]) -> tuple[int, int]:
    token = ConsistencyToken.decode(accepted["consistencyToken"])
    return token.partition, token.offset


def test_each_rejection_code_lands_in_the_exceptions_node(
    system: RunningSystem, mongo: StoreClient
) -> None:
    settings = system.stack.settings
    commands = httpx.Client(
        headers=caller_headers("anonymous"), base_url=system.command_url, timeout=10
    )
    queries = httpx.Client(
        headers=caller_headers("anonymous"), base_url=system.query_url, timeout=10
    )

    created = write(
        commands, "POST", "/action-items", {"title": "first"}, **{"Idempotency-Key": "k1"}
    )
    item_id = created["actionItemId"]
    stale = write(
        commands, "PATCH", f"/action-items/{item_id}", {"title": "late"}, **{"If-Match": '"7"'}
    )
    done = write(commands, "PATCH", f"/action-items/{item_id}", {"status": "done"})
    illegal = write(commands, "PATCH", f"/action-items/{item_id}", {"status": "in_progress"})
    reused = write(
        commands, "POST", "/action-items", {"title": "another body"}, **{"Idempotency-Key": "k1"}
    )
    assert reused["actionItemId"] == item_id  # the key names the item
    assert reused["commandId"] != created["commandId"]  # another payload: another command
    retried = [
        write(commands, "POST", "/action-items", {"title": "first"}, **{"Idempotency-Key": "k1"})
        for _ in range(4)
    ]
    assert {r["commandId"] for r in retried} == {created["commandId"]}
    ghost_id = str(uuid.uuid4())
    ghost = write(commands, "PATCH", f"/action-items/{ghost_id}", {"title": "nobody"})

    second_create = CommandEnvelope(
        command_id=str(uuid.uuid4()),
        action_item_id=item_id,
        accepted_at=datetime.now(UTC).replace(microsecond=0),
        correlation_id="direct",
        payload_hash="direct",
        payload=CreateActionItem(title="impostor"),
    )
    p, o = produce_one(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        settings.commands_partitions,
        second_create,
    )
    last = ConsistencyToken(second_create.command_id, p, o).encode()

    read = queries.get(f"/action-items/{item_id}", headers={"Consistency-Token": last})
    assert read.status_code == 200, read.text
    item = read.json()
    assert (item["title"], item["status"], item["version"]) == ("first", "done", 2)
    assert read.headers["ETag"] == '"2"'
    expected_entries = [
        (stale, "VERSION_CONFLICT", "If-Match expected version 7, item is at 1"),
        (illegal, "INVALID_TRANSITION", "status cannot change from done to in_progress"),
        (reused, "IDEMPOTENCY_KEY_REUSED", None),
        (None, "ALREADY_EXISTS", f"ActionItem {item_id} already exists"),
    ]
    assert [e["code"] for e in item["exceptions"]] == [code for _, code, _ in expected_entries]
    for entry, (accepted, _code, message) in zip(item["exceptions"], expected_entries, strict=True):
        assert set(entry) == {
            "commandId",
            "code",
            "message",
            "occurredAt",
            "partition",
            "offset",
            "correlationId",
        }
        if accepted is not None:
            assert entry["commandId"] == accepted["commandId"]
            assert (entry["partition"], entry["offset"]) == position(accepted)
        else:
            assert entry["commandId"] == second_create.command_id
            assert (entry["partition"], entry["offset"]) == (p, o)
            assert entry["occurredAt"] == second_create.accepted_at.isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z")
        if message is not None:
            assert entry["message"] == message
        status = queries.get(f"/commands/{entry['commandId']}").json()
        assert status["status"] == "rejected"
        assert status["exception"] == entry
        assert status["processedAt"] == entry["occurredAt"]
    # a rejection changes nothing else: the item is exactly as the applied 'done' left it
    done_status = queries.get(f"/commands/{done['commandId']}").json()
    assert done_status["status"] == "applied" and done_status["exception"] is None
    assert item["updatedAt"] == done_status["processedAt"]

    # an update of an unknown item: on the command's status only
    ghost_read = queries.get(
        f"/action-items/{ghost_id}", headers={"Consistency-Token": ghost["consistencyToken"]}
    )
    assert ghost_read.status_code == 404
    ghost_status = queries.get(f"/commands/{ghost['commandId']}").json()
    assert ghost_status["status"] == "rejected"
    assert ghost_status["exception"]["code"] == "NOT_FOUND"
    assert (ghost_status["exception"]["partition"], ghost_status["exception"]["offset"]) == (
        position(ghost)
    )

    # the store holds exactly the domain folded over the log, internal fields included
    expected = fold_log(
        read_log(
            settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
        )
    )
    assert differences(expected, read_stored(mongo[settings.mongodb_database])) == []

    rejected = metric_values(system.projector_url, "projector_commands_rejected_total")
    for code in ("VERSION_CONFLICT", "INVALID_TRANSITION", "IDEMPOTENCY_KEY_REUSED"):
        assert rejected[f'{{code="{code}"}}'] == 1
    assert rejected['{code="ALREADY_EXISTS"}'] == 1
    assert rejected['{code="NOT_FOUND"}'] == 1
    assert metric_values(system.projector_url, "projector_commands_applied_total")[""] == 2

    def rejection_logged() -> bool:
        for line in system.projector.log_tail(200_000).splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("commandId") == stale["commandId"]:
                    return entry.get("code") == "VERSION_CONFLICT"
        return False

    wait_until(rejection_logged, 5, "a structured log line with the rejected commandId")
