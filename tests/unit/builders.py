"""Small builders of commands for unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, get_args, get_origin, get_type_hints

from domain.commands import CommandEnvelope, CreateActionItem, Payload, UpdateActionItem

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ITEM = "11111111-1111-4111-8111-111111111111"


# Fields of a create or an update by name (see create() and update()).
CreateFields = dict[str, Any]
UpdateFields = dict[str, Any]


def _field_value(cls: type[Payload], name: str, value: Any) -> Any:
    """``value`` as the type of the command's field ``name``: a string as its enum, any
    iterable as a tuple; None stays None. The fields are the dataclass's, by name."""
    hint = get_type_hints(cls)[name]
    kinds = [a for a in get_args(hint) if a is not type(None)] or [hint]
    kind = get_origin(kinds[0]) or kinds[0]
    if value is None or not isinstance(kind, type):
        return value
    if issubclass(kind, Enum):
        return kind(value)
    if kind is tuple:
        return tuple(value)
    return value


def create(
    item_id: str = ITEM,
    title: str = "t",
    *,
    at: int = 0,
    key: str | None = None,
    command_id: str | None = None,
    **fields: Any,
) -> CommandEnvelope:
    """A create of ``title`` with any other fields of CreateActionItem, by name (enum values
    may be given as their strings, tags as any iterable)."""
    given = {name: _field_value(CreateActionItem, name, v) for name, v in fields.items()}
    payload = CreateActionItem(title=title, **given)
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
    **changes: Any,
) -> CommandEnvelope:
    """An update setting ``changes`` (fields of UpdateActionItem by name; a None clears)."""
    given = {name: _field_value(UpdateActionItem, name, v) for name, v in changes.items()}
    payload = UpdateActionItem(fields_set=frozenset(given), **given)
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
