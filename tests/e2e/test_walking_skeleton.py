"""The thin vertical slice through the real processes and the real services."""

from __future__ import annotations

import httpx

from tests.conftest import RunningSystem
from tests.support.auth import caller_headers


def test_create_is_on_the_log_projected_and_readable(system: RunningSystem) -> None:
    body = {
        "title": "  Write the runbook  ",
        "assignee": "ops@example.com",
        "priority": "high",
        "dueDate": "2026-12-31",
        "tags": ["ops", "docs"],
    }
    created = httpx.post(
        f"{system.command_url}/action-items", json=body, headers=caller_headers("w"), timeout=10
    )
    assert created.status_code == 202, created.text
    accepted = created.json()
    assert accepted["status"] == "accepted"
    assert created.headers["Location"] == f"{system.query_url}/commands/{accepted['commandId']}"

    read = httpx.get(
        f"{system.query_url}/action-items/{accepted['actionItemId']}",
        headers={**caller_headers("r"), "Consistency-Token": accepted["consistencyToken"]},
        timeout=10,
    )
    assert read.status_code == 200, read.text
    item = read.json()
    assert read.headers["ETag"] == '"1"'
    assert item == {
        "id": accepted["actionItemId"],
        "title": "Write the runbook",
        "description": None,
        "assignee": "ops@example.com",
        "priority": "high",
        "dueDate": "2026-12-31",
        "tags": ["ops", "docs"],
        "status": "open",
        "version": 1,
        "createdAt": item["createdAt"],
        "updatedAt": item["createdAt"],
        "exceptions": [],
        "exceptionCount": 0,
    }

    status = httpx.get(
        f"{system.query_url}/commands/{accepted['commandId']}",
        headers=caller_headers("r"),
        timeout=10,
    )
    assert status.status_code == 200
    assert status.json()["status"] == "applied"
    assert status.json()["actionItemId"] == accepted["actionItemId"]
