"""Translate between domain values and the documents of the read model."""

from __future__ import annotations

from typing import Any

from domain.commands import Priority, Status
from domain.planning import CommandOutcome, HistoryEntry, KeyClaim, StoredItem
from domain.rules import INLINE_EXCEPTIONS, ActionItem, Code, ExceptionEntry, LogPosition

# Fields an item document had before issue 16 (every used key on the item); an item
# loaded with one of them is rewritten whole once, which drops it.
LEGACY_ITEM_FIELDS = ("_idem",)


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
        "exceptionCount": s.exception_count,
        "_log": {"partition": item.partition, "lastOffset": item.last_offset},
    }


def item_changes(before: StoredItem, after: StoredItem) -> dict[str, Any]:
    """The top-level fields of the item document that differ (what a ``$set`` must write).

    Bounded whatever the item's past: the fields are bounded by the command
    limits and ``exceptions`` holds at most INLINE_EXCEPTIONS entries.
    """
    old, new = item_doc(before), item_doc(after)
    return {name: value for name, value in new.items() if old.get(name) != value}


def is_legacy_item(doc: dict[str, Any]) -> bool:
    """A document written before bounded items (whole history inline, keys on the item)."""
    return "exceptionCount" not in doc or any(f in doc for f in LEGACY_ITEM_FIELDS)


def item_from(doc: dict[str, Any]) -> StoredItem:
    inline = doc.get("exceptions", ())
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
        exceptions=tuple(exception_from(e) for e in inline[-INLINE_EXCEPTIONS:]),
        exception_count=int(doc.get("exceptionCount", len(inline))),
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


def history_doc(entry: HistoryEntry) -> dict[str, Any]:
    """One record of an item's Exceptions history: one per rejected command, numbered."""
    return {
        "_id": entry.entry.command_id,
        "itemId": entry.item_id,
        "seq": entry.seq,
        **exception_doc(entry.entry),
    }


def claim_doc(claim: KeyClaim) -> dict[str, Any]:
    return {
        "_id": claim.id,
        "commandId": claim.command_id,
        "partition": claim.position.partition,
        "offset": claim.position.offset,
    }


def claim_from(doc: dict[str, Any]) -> KeyClaim:
    key_hash = str(doc["_id"]).rsplit(":", 1)[0]
    return KeyClaim(key_hash, doc["commandId"], LogPosition(doc["partition"], doc["offset"]))


def position_from(doc: dict[str, Any]) -> LogPosition:
    return LogPosition(doc["partition"], doc["offset"])
