"""Translate between domain values and the documents of the read model."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from domain.commands import Priority, Status
from domain.planning import CommandOutcome, StoredItem
from domain.rules import ActionItem, Code, ExceptionEntry, LogPosition


def exception_doc(entry: ExceptionEntry) -> dict[str, Any]:
    return {
        "commandId": entry.command_id,
        "code": str(entry.code),
        "message": entry.message,
        "occurredAt": entry.occurred_at,
        "partition": entry.partition,
        "offset": entry.offset,
        "correlationId": entry.correlation_id,
    }


def exception_from(doc: dict[str, Any]) -> ExceptionEntry:
    return ExceptionEntry(
        command_id=doc["commandId"],
        code=Code(doc["code"]),
        message=doc["message"],
        occurred_at=doc["occurredAt"],
        partition=doc["partition"],
        offset=doc["offset"],
        correlation_id=doc.get("correlationId"),
    )


def item_doc(item: StoredItem) -> dict[str, Any]:
    s = item.state
    return {
        "_id": s.id,
        "title": s.title,
        "description": s.description,
        "assignee": s.assignee,
        "priority": str(s.priority),
        "dueDate": s.due_date,
        "tags": list(s.tags),
        "status": str(s.status),
        "version": s.version,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
        "exceptions": [exception_doc(e) for e in s.exceptions],
        "_log": {"partition": item.partition, "lastOffset": item.last_offset},
        "_idem": dict(s.idempotency_keys),
    }


def item_from(doc: dict[str, Any]) -> StoredItem:
    state = ActionItem(
        id=doc["_id"],
        title=doc["title"],
        description=doc.get("description"),
        assignee=doc.get("assignee"),
        priority=Priority(doc["priority"]),
        due_date=doc.get("dueDate"),
        tags=tuple(doc.get("tags", ())),
        status=Status(doc["status"]),
        version=doc["version"],
        created_at=doc["createdAt"],
        updated_at=doc["updatedAt"],
        exceptions=tuple(exception_from(e) for e in doc.get("exceptions", ())),
        idempotency_keys=MappingProxyType(dict(doc.get("_idem", {}))),
    )
    return StoredItem(state, doc["_log"]["partition"], doc["_log"]["lastOffset"])


def status_doc(outcome: CommandOutcome) -> dict[str, Any]:
    return {
        "_id": outcome.command_id,
        "commandId": outcome.command_id,
        "actionItemId": outcome.action_item_id,
        "status": outcome.status,
        "exception": exception_doc(outcome.exception) if outcome.exception else None,
        "processedAt": outcome.processed_at,
        "partition": outcome.position.partition,
        "offset": outcome.position.offset,
    }


def position_from(doc: dict[str, Any]) -> LogPosition:
    return LogPosition(doc["partition"], doc["offset"])
