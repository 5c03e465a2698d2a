"""Small builders of commands for unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from domain.commands import CommandEnvelope, CreateActionItem, Priority, Status, UpdateActionItem

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ITEM = "11111111-1111-4111-8111-111111111111"


def create(
    item_id: str = ITEM,
    title: str = "t",
    *,
    at: int = 0,
    key: str | None = None,
    command_id: str | None = None,
    **fields: object,
) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=command_id or str(uuid.uuid4()),
        action_item_id=item_id,
        accepted_at=T0 + timedelta(seconds=at),
        correlation_id="corr",
        payload_hash="h-" + title,
        payload=CreateActionItem(title=title, **fields),  # type: ignore[arg-type]
        idempotency_key_hash=key,
    )


def update(
    item_id: str = ITEM,
    *,
    at: int = 1,
    expected: int | None = None,
    key: str | None = None,
    command_id: str | None = None,
    **changes: object,
) -> CommandEnvelope:
    if "status" in changes and isinstance(changes["status"], str):
        changes["status"] = Status(changes["status"])
    if "priority" in changes and isinstance(changes["priority"], str):
        changes["priority"] = Priority(changes["priority"])
    if "tags" in changes and changes["tags"] is not None:
        changes["tags"] = tuple(changes["tags"])  # type: ignore[arg-type]
    return CommandEnvelope(
        command_id=command_id or str(uuid.uuid4()),
        action_item_id=item_id,
        accepted_at=T0 + timedelta(seconds=at),
        correlation_id="corr",
        payload_hash="h-" + repr(sorted(changes.items())),
        payload=UpdateActionItem(fields_set=frozenset(changes), **changes),  # type: ignore[arg-type]
        idempotency_key_hash=key,
        expected_version=expected,
    )
