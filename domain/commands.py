"""The command values that travel on the log, independent of their Avro encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Status(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


PATCHABLE_FIELDS = ("title", "description", "assignee", "priority", "dueDate", "tags", "status")
# The fields a patch cannot clear (a null for them is refused by the API and by the codec).
NOT_NULLABLE = ("title", "priority", "status", "tags")


@dataclass(frozen=True)
class CreateActionItem:
    title: str
    description: str | None = None
    assignee: str | None = None
    priority: Priority = Priority.NORMAL
    dueDate: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateActionItem:
    """A merge patch: only the fields in ``fields_set`` are touched; a None among them clears."""

    fields_set: frozenset[str]
    title: str | None = None
    description: str | None = None
    assignee: str | None = None
    priority: Priority | None = None
    dueDate: str | None = None
    tags: tuple[str, ...] | None = None
    status: Status | None = None

    def changes(self) -> dict[str, object]:
        """The patch as a mapping of field name to new value, for the fields it sets."""
        return {name: getattr(self, name) for name in PATCHABLE_FIELDS if name in self.fields_set}


Payload = CreateActionItem | UpdateActionItem


@dataclass(frozen=True)
class CommandEnvelope:
    command_id: str
    action_item_id: str
    accepted_at: datetime
    correlation_id: str
    payload_hash: str
    payload: Payload
    idempotency_key_hash: str | None = None
    expected_version: int | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)
    # Schema v2: the X-Client-Id the command came with; None when read from v1. From v3 on it
    # is informational only: the client's claim, never used to scope anything.
    client_id: str | None = None
    # Schema v3: the authenticated caller (the bearer token's sub) that scopes Idempotency-Key;
    # None when read from v1 or v2.
    caller: str | None = None
    # Schema v4: the commandId of the command that first used this command's Idempotency-Key
    # (same caller), as the command API's key registry said at acceptance, when that is another
    # command (the projector rejects this one: IDEMPOTENCY_KEY_REUSED). None for the key's first
    # use, without a key, when the registry could not be asked, and when read from v1..v3.
    key_owner: str | None = None

    @property
    def kind(self) -> str:
        return "create" if isinstance(self.payload, CreateActionItem) else "update"
