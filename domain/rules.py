"""What a command does to an ActionItem: pure functions, no clock, no I/O.

Timestamps come from the command (its acceptedAt), so replaying the log gives
identical documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from domain.commands import CommandEnvelope, CreateActionItem, Priority, Status


class Code(StrEnum):
    VERSION_CONFLICT = "VERSION_CONFLICT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    NOT_FOUND = "NOT_FOUND"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"


ALLOWED_TRANSITIONS: Mapping[Status, frozenset[Status]] = MappingProxyType(
    {
        Status.OPEN: frozenset({Status.IN_PROGRESS, Status.DONE, Status.CANCELLED}),
        Status.IN_PROGRESS: frozenset({Status.OPEN, Status.DONE, Status.CANCELLED}),
        Status.DONE: frozenset({Status.OPEN}),
        Status.CANCELLED: frozenset({Status.OPEN}),
    }
)


def transition_allowed(current: Status, target: Status) -> bool:
    """Setting the status an item already has is not a transition and is allowed."""
    return target == current or target in ALLOWED_TRANSITIONS[current]


@dataclass(frozen=True)
class LogPosition:
    partition: int
    offset: int


@dataclass(frozen=True)
class ExceptionEntry:
    command_id: str
    code: Code
    message: str
    occurred_at: str
    partition: int
    offset: int
    # The X-Correlation-Id of the request that sent the command (None in entries stored before
    # it was recorded): an operator follows it from the HTTP request to this entry.
    correlation_id: str | None = None


@dataclass(frozen=True)
class ActionItem:
    id: str
    title: str
    description: str | None
    assignee: str | None
    priority: Priority
    due_date: str | None
    tags: tuple[str, ...]
    status: Status
    version: int
    created_at: str
    updated_at: str
    # the most recent INLINE_EXCEPTIONS entries, oldest first; the whole history is kept
    # beside the item, one record per entry (numbered 1..exception_count)
    exceptions: tuple[ExceptionEntry, ...] = ()
    exception_count: int = 0


INLINE_EXCEPTIONS = 20


@dataclass(frozen=True)
class Applied:
    state: ActionItem


@dataclass(frozen=True)
class Rejected:
    code: Code
    message: str


Decision = Applied | Rejected


def timestamp(moment: datetime) -> str:
    """The read model's timestamp format: UTC, milliseconds, 'Z'."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decide(
    state: ActionItem | None, command: CommandEnvelope, key_owner: str | None = None
) -> Decision:
    """Apply one command to the current state of its ActionItem, or say why not.

    ``key_owner`` is the commandId of the command that first used the command's
    Idempotency-Key (for the same caller), if any: the command API's verdict carried
    in the command, or else the first applied one on its partition
    (``domain.planning``); another command with that key is a reuse, whatever item it
    is for.
    """
    if (
        command.idempotency_key_hash is not None
        and key_owner is not None
        and key_owner != command.command_id
    ):
        return Rejected(
            Code.IDEMPOTENCY_KEY_REUSED,
            f"Idempotency-Key was already used by command {key_owner} with a different payload",
        )
    if isinstance(command.payload, CreateActionItem):
        if state is not None:
            return Rejected(
                Code.ALREADY_EXISTS, f"ActionItem {command.action_item_id} already exists"
            )
        return Applied(_created(command, command.payload))
    if state is None:
        return Rejected(Code.NOT_FOUND, f"ActionItem {command.action_item_id} does not exist")
    if command.expected_version is not None and command.expected_version != state.version:
        return Rejected(
            Code.VERSION_CONFLICT,
            f"If-Match expected version {command.expected_version}, item is at {state.version}",
        )
    changes = command.payload.changes()
    target = changes.get("status")
    if isinstance(target, Status) and not transition_allowed(state.status, target):
        return Rejected(
            Code.INVALID_TRANSITION, f"status cannot change from {state.status} to {target}"
        )
    return Applied(_updated(state, command, changes))


def _created(command: CommandEnvelope, payload: CreateActionItem) -> ActionItem:
    at = timestamp(command.accepted_at)
    return ActionItem(
        id=command.action_item_id,
        title=payload.title,
        description=payload.description,
        assignee=payload.assignee,
        priority=payload.priority,
        due_date=payload.dueDate,
        tags=tuple(payload.tags),
        status=Status.OPEN,
        version=1,
        created_at=at,
        updated_at=at,
    )


_FIELD_ATTR = {"dueDate": "due_date"}


def _updated(state: ActionItem, command: CommandEnvelope, changes: dict[str, object]) -> ActionItem:
    fields = {_FIELD_ATTR.get(name, name): value for name, value in changes.items()}
    if "tags" in fields:
        fields["tags"] = tuple(fields["tags"] or ())  # type: ignore[arg-type]
    return replace(
        state,
        **fields,  # type: ignore[arg-type]
        version=state.version + 1,
        updated_at=timestamp(command.accepted_at),
    )


def exception_entry(
    command: CommandEnvelope, position: LogPosition, rejected: Rejected
) -> ExceptionEntry:
    """The one place an Exceptions entry is made: what was refused, why, where on the log."""
    return ExceptionEntry(
        command_id=command.command_id,
        code=rejected.code,
        message=rejected.message,
        occurred_at=timestamp(command.accepted_at),
        partition=position.partition,
        offset=position.offset,
        correlation_id=command.correlation_id,
    )


def with_exception(state: ActionItem, entry: ExceptionEntry) -> ActionItem:
    """The Exceptions node gets one entry (number ``exception_count`` after it); nothing else
    on the item changes. Only the latest INLINE_EXCEPTIONS entries stay on the item."""
    return replace(
        state,
        exceptions=(*state.exceptions, entry)[-INLINE_EXCEPTIONS:],
        exception_count=state.exception_count + 1,
    )


def with_exception_moved(state: ActionItem, command_id: str, position: LogPosition) -> ActionItem:
    """A re-sent copy of a rejected command: its entry now points at the copy's position
    (the inline one, if still inline; the history record is moved by the store).

    Compaction keeps the latest copy of a key, so recording the latest copy's
    position makes a replay after compaction produce the same entry.
    """
    moved = tuple(
        replace(e, partition=position.partition, offset=position.offset)
        if e.command_id == command_id
        else e
        for e in state.exceptions
    )
    return replace(state, exceptions=moved)
