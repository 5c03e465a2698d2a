"""Small builders of commands for unit tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

from domain.commands import CommandEnvelope, CreateActionItem, Priority, Status, UpdateActionItem

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ITEM = "11111111-1111-4111-8111-111111111111"


class CreateFields(TypedDict, total=False):
    """The optional fields of a create; enum values may be given as their strings."""

    description: str | None
    assignee: str | None
    priority: Priority | str
    dueDate: str | None
    tags: Iterable[str]


class UpdateFields(TypedDict, total=False):
    """The fields an update sets (a None clears); enum values may be given as their strings."""

    title: str | None
    description: str | None
    assignee: str | None
    priority: Priority | str | None
    dueDate: str | None
    tags: Iterable[str] | None
    status: Status | str | None


def create(
    item_id: str = ITEM,
    title: str = "t",
    *,
    at: int = 0,
    key: str | None = None,
    command_id: str | None = None,
    **fields: Unpack[CreateFields],
) -> CommandEnvelope:
    payload = CreateActionItem(
        title=title,
        description=fields.get("description"),
        assignee=fields.get("assignee"),
        priority=Priority(fields.get("priority", Priority.NORMAL)),
        dueDate=fields.get("dueDate"),
        tags=tuple(fields.get("tags", ())),
    )
    return CommandEnvelope(
        command_id=command_id or str(uuid.uuid4()),
        action_item_id=item_id,
        accepted_at=T0 + timedelta(seconds=at),
        correlation_id="corr",
        payload_hash="h-" + title,
        payload=payload,
        idempotency_key_hash=key,
    )


def update(
    item_id: str = ITEM,
    *,
    at: int = 1,
    expected: int | None = None,
    key: str | None = None,
    command_id: str | None = None,
    **changes: Unpack[UpdateFields],
) -> CommandEnvelope:
    status, priority, tags = changes.get("status"), changes.get("priority"), changes.get("tags")
    given: dict[str, object] = dict(changes)
    if status is not None:
        given["status"] = status = Status(status)
    if priority is not None:
        given["priority"] = priority = Priority(priority)
    if tags is not None:
        given["tags"] = tags = tuple(tags)
    payload = UpdateActionItem(
        fields_set=frozenset(given),
        title=changes.get("title"),
        description=changes.get("description"),
        assignee=changes.get("assignee"),
        priority=priority,
        dueDate=changes.get("dueDate"),
        tags=tags,
        status=status,
    )
    return CommandEnvelope(
        command_id=command_id or str(uuid.uuid4()),
        action_item_id=item_id,
        accepted_at=T0 + timedelta(seconds=at),
        correlation_id="corr",
        payload_hash="h-" + repr(sorted(given.items())),
        payload=payload,
        idempotency_key_hash=key,
        expected_version=expected,
    )
