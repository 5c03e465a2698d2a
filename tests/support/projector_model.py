"""The expected read model: the pure domain folded over the log, and a comparison with the store.

This oracle shares only ``decide`` and ``with_exception`` with the projector: it
keeps every Exceptions entry (the history) and the Idempotency-Key owners on
its own, and it
walks each partition in offset order, once, without batches, guards or
retries. Whatever crashes, redeliveries or rebalances the projector went
through, the store must end up equal to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.planning import CommandRecord, StoredItem
from domain.rules import (
    Applied,
    LogPosition,
    Rejected,
    decide,
    exception_entry,
    timestamp,
    with_exception,
    with_exception_moved,
)
from projector.documents import item_from
from schemas.codec import CommandCodec, DecodeError
from schemas.record_key import is_legacy_key
from servicekit.read_model import ReadModel, active_read_model
from servicekit.store_types import StoreDatabase
from tests.support.projector_log import LogRecord


@dataclass
class ExpectedModel:
    items: dict[str, StoredItem] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    undecodable: list[LogRecord] = field(default_factory=list)
    resent_copies: int = 0
    # every Exceptions entry ever recorded on an item, by commandId (history records)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (key hash, partition) -> the commandId of the first applied command that used it
    key_owners: dict[tuple[str, int], str] = field(default_factory=dict)

    def history_of(self, item_id: str) -> list[dict[str, Any]]:
        return sorted(
            (h for h in self.history.values() if h["itemId"] == item_id), key=lambda h: h["seq"]
        )

    def codes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for status in self.statuses.values():
            code = status["exception"]["code"] if status["exception"] else "APPLIED"
            out[code] = out.get(code, 0) + 1
        return out


def fold_log(records: Sequence[LogRecord], codec: CommandCodec | None = None) -> ExpectedModel:
    """Decode the log and fold it (undecodable records are set aside, as the DLQ takes them)."""
    codec = codec or CommandCodec()
    decoded: list[CommandRecord] = []
    undecodable: list[LogRecord] = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            command = codec.decode(record.value)
            decoded.append(
                CommandRecord(
                    LogPosition(record.partition, record.offset),
                    command,
                    legacy_key=is_legacy_key(record.key, command.command_id),
                )
            )
        except DecodeError:
            undecodable.append(record)
    model = fold_commands(decoded)
    model.undecodable = undecodable
    return model


def fold_commands(records: Sequence[CommandRecord]) -> ExpectedModel:
    """Every command once, in log order per partition.

    The first copy of a commandId takes effect; a later re-sent copy has no
    effect and changes nothing. Only a copy written before issue 20 (key =
    commandId, ``legacy_key``) becomes the command's recorded position (status,
    Exceptions entry and the item's last offset), since compaction keeps only
    the last of those.
    """
    model = ExpectedModel()
    ordered = sorted(records, key=lambda r: (r.position.partition, r.position.offset))
    for record in ordered:
        command, position = record.command, record.position
        model.next_offsets[position.partition] = position.offset + 1
        current = model.items.get(command.action_item_id)
        status = model.statuses.get(command.command_id)
        if status is not None:
            model.resent_copies += 1
            if not record.legacy_key:
                continue  # the first copy wins and keeps its place
            status.update(partition=position.partition, offset=position.offset)
            if status["exception"] is not None:
                status["exception"].update(partition=position.partition, offset=position.offset)
            if current is not None:
                model.items[command.action_item_id] = StoredItem(
                    with_exception_moved(current.state, command.command_id, position),
                    position.partition,
                    position.offset,
                )
            entry = model.history.get(command.command_id)
            if entry is not None:
                entry.update(partition=position.partition, offset=position.offset)
            continue
        key = command.idempotency_key_hash
        owner = model.key_owners.get((key, position.partition)) if key is not None else None
        if key is not None and command.key_owner not in (None, command.command_id):
            owner = command.key_owner  # the command API's verdict (v4) beats the partition's
        decision = decide(current.state if current else None, command, owner)
        at = timestamp(command.accepted_at)
        exception: dict[str, Any] | None = None
        if isinstance(decision, Applied):
            model.items[command.action_item_id] = StoredItem(
                decision.state, position.partition, position.offset
            )
            if key is not None:
                model.key_owners.setdefault((key, position.partition), command.command_id)
        else:
            assert isinstance(decision, Rejected)
            exception = {
                "commandId": command.command_id,
                "code": str(decision.code),
                "message": decision.message,
                "occurredAt": at,
                "partition": position.partition,
                "offset": position.offset,
                "correlationId": command.correlation_id,
            }
            if current is not None:
                after = with_exception(current.state, exception_entry(command, position, decision))
                model.items[command.action_item_id] = StoredItem(
                    after, position.partition, position.offset
                )
                model.history[command.command_id] = {
                    "_id": command.command_id,
                    "itemId": command.action_item_id,
                    "seq": after.exception_count,
                    **exception,
                }
        model.statuses[command.command_id] = {
            "_id": command.command_id,
            "commandId": command.command_id,
            "actionItemId": command.action_item_id,
            "status": "applied" if exception is None else "rejected",
            "exception": exception,
            "processedAt": at,
            "partition": position.partition,
            "offset": position.offset,
        }
    return model


@dataclass
class StoredModel:
    items: dict[str, dict[str, Any]]
    statuses: dict[str, dict[str, Any]]
    positions: dict[int, int]
    history: dict[str, dict[str, Any]] = field(default_factory=dict)

    def processed(self) -> int:
        return sum(self.positions.values())


def read_stored(db: StoreDatabase, generation: str | None = None) -> StoredModel:
    rm = ReadModel(db, generation) if generation else active_read_model(db)
    return StoredModel(
        items={d["_id"]: d for d in rm.items.find({})},
        statuses={d["_id"]: d for d in rm.commands.find({})},
        positions={int(d["partition"]): int(d["nextOffset"]) for d in rm.positions.find({})},
        history={d["_id"]: d for d in rm.exceptions.find({})},
    )


def differences(expected: ExpectedModel, stored: StoredModel, limit: int = 5) -> list[str]:
    """Human-readable differences (empty when the store holds exactly the expected model)."""
    out: list[str] = []
    missing = expected.items.keys() - stored.items.keys()
    extra = stored.items.keys() - expected.items.keys()
    if missing:
        out.append(f"{len(missing)} items missing, e.g. {sorted(missing)[:limit]}")
    if extra:
        out.append(f"{len(extra)} unexpected items, e.g. {sorted(extra)[:limit]}")
    wrong = [
        (item_id, expected.items[item_id], item_from(stored.items[item_id]))
        for item_id in sorted(expected.items.keys() & stored.items.keys())
        if item_from(stored.items[item_id]) != expected.items[item_id]
    ]
    if wrong:
        out.append(f"{len(wrong)} items differ")
        for item_id, want, got in wrong[:limit]:
            out.append(
                f"  {item_id}: expected version {want.state.version} last offset "
                f"{want.last_offset} exceptions {len(want.state.exceptions)}; stored version "
                f"{got.state.version} last offset {got.last_offset} exceptions "
                f"{len(got.state.exceptions)}"
            )
    missing_s = expected.statuses.keys() - stored.statuses.keys()
    extra_s = stored.statuses.keys() - expected.statuses.keys()
    if missing_s:
        out.append(f"{len(missing_s)} command statuses missing, e.g. {sorted(missing_s)[:limit]}")
    if extra_s:
        out.append(f"{len(extra_s)} unexpected command statuses")
    wrong_s = [
        cid
        for cid in sorted(expected.statuses.keys() & stored.statuses.keys())
        if stored.statuses[cid] != expected.statuses[cid]
    ]
    if wrong_s:
        out.append(f"{len(wrong_s)} command statuses differ")
        for cid in wrong_s[:limit]:
            out.append(f"  expected {expected.statuses[cid]}\n  stored   {stored.statuses[cid]}")
    if stored.history != expected.history:
        missing_h = expected.history.keys() - stored.history.keys()
        extra_h = stored.history.keys() - expected.history.keys()
        wrong_h = [
            c
            for c in sorted(expected.history.keys() & stored.history.keys())
            if expected.history[c] != stored.history[c]
        ]
        out.append(
            f"Exceptions history differs: {len(missing_h)} records missing, {len(extra_h)} "
            f"unexpected, {len(wrong_h)} differ"
        )
        for cid in wrong_h[:limit]:
            out.append(f"  expected {expected.history[cid]}\n  stored   {stored.history[cid]}")
    for partition, offset in sorted(expected.next_offsets.items()):
        if stored.positions.get(partition, 0) < offset:
            out.append(
                f"position of partition {partition} is {stored.positions.get(partition)}, "
                f"expected at least {offset}"
            )
    return out
