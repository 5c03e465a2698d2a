"""Plan the effect of a batch of log records on the read model: pure, deterministic.

Exactly-once effect with at-least-once delivery rests on three guards:
- an item remembers the offset of the last command that touched it
  (``last_offset``); a redelivered command at or below it is skipped;
- a command whose status is already stored at another log position is a
  re-sent copy (same commandId) and has no second effect: the first copy wins.
  Every record has a key of its own (``schemas/record_key.py``), so
  compaction keeps every copy and a replay meets the first one first; the
  later copy moves nothing. Records written before that scheme
  (``legacy_key``: key = commandId) keep the old rule, because compaction
  keeps only their last copy: a later legacy copy moves the command's
  recorded position (status, Exceptions entry, the item's last offset) to
  itself, exactly as the live model did when it wrote them;
- statuses (with the Exceptions history records and the Idempotency-Key
  claims) are written before items, so an item that shows an effect always
  has the status, the history record and the claim of the command that caused
  it; a copy's status move is
  written after the items, so a status never points past an effect that a
  crash kept from being written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from domain.commands import CommandEnvelope
from domain.rules import (
    ActionItem,
    Applied,
    ExceptionEntry,
    LogPosition,
    Rejected,
    decide,
    exception_entry,
    timestamp,
    with_exception,
    with_exception_moved,
)


@dataclass(frozen=True)
class CommandRecord:
    position: LogPosition
    command: CommandEnvelope
    # Written before issue 20 under the key = commandId (decided from the key at decode time):
    # a later copy of such a record moves the command's recorded position to itself.
    legacy_key: bool = False


@dataclass(frozen=True)
class StoredItem:
    state: ActionItem
    partition: int
    last_offset: int


@dataclass(frozen=True)
class KeyClaim:
    """The applied command that first used an Idempotency-Key on a partition.

    Claims are kept per (key hash, partition): the partition's log order decides
    which command was first, the same in the live model and in every replay
    (there is no such order across partitions). A claim is visible only to
    commands after it in the log, so a replay from further back decides an
    earlier command exactly as the first time.
    """

    key_hash: str
    command_id: str
    position: LogPosition

    @property
    def id(self) -> str:
        return claim_id(self.key_hash, self.position.partition)


def claim_id(key_hash: str, partition: int) -> str:
    return f"{key_hash}:{partition}"


@dataclass(frozen=True)
class HistoryEntry:
    """One Exceptions entry of an item, numbered from 1 in the order it was recorded."""

    item_id: str
    seq: int
    entry: ExceptionEntry


@dataclass(frozen=True)
class CommandOutcome:
    command_id: str
    action_item_id: str
    status: str  # "applied" | "rejected"
    exception: ExceptionEntry | None
    processed_at: str
    position: LogPosition
    correlation_id: str | None = None


@dataclass(frozen=True)
class ItemWrite:
    """Write ``stored`` if the item is still at ``expected_last_offset`` (None: must not exist)."""

    stored: StoredItem
    expected_last_offset: int | None
    before: StoredItem | None = None  # the stored item the write changes (None: a create)


@dataclass(frozen=True)
class StatusMove:
    """A command's status now points at a later copy of it (written after the items)."""

    command_id: str
    position: LogPosition


@dataclass
class BatchPlan:
    outcomes: list[CommandOutcome] = field(default_factory=list)
    moves: list[StatusMove] = field(default_factory=list)
    item_writes: list[ItemWrite] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    key_claims: list[KeyClaim] = field(default_factory=list)
    duplicates: list[CommandRecord] = field(default_factory=list)
    already_applied: list[CommandRecord] = field(default_factory=list)
    decided_before: list[CommandRecord] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)


def plan_batch(
    records: Iterable[CommandRecord],
    stored: Mapping[str, StoredItem],
    known_positions: Mapping[str, LogPosition],
    claims: Mapping[str, KeyClaim] | None = None,
) -> BatchPlan:
    """Decide every record in log order against the stored state, chaining in-batch effects.

    ``stored`` holds the current documents of the items the batch touches;
    ``known_positions`` the log position of every command of the batch whose
    status is already stored; ``claims`` the stored Idempotency-Key claims
    (by ``claim_id``) of the keys its commands carry.

    Longer than 60 lines on purpose: one pass in log order whose branches are,
    one for one, the cases of the exactly-once argument (docs/projector.md), and
    read best side by side.
    """
    plan = BatchPlan()
    working: dict[str, StoredItem] = dict(stored)
    seen: dict[str, LogPosition] = dict(known_positions)
    owners: dict[str, KeyClaim] = dict(claims or {})
    for record in records:
        position, command = record.position, record.command
        plan.next_offsets[position.partition] = max(
            plan.next_offsets.get(position.partition, 0), position.offset + 1
        )
        first = seen.setdefault(command.command_id, position)
        current = working.get(command.action_item_id)
        if first != position:
            plan.duplicates.append(record)
            if record.legacy_key and _later(position, first):
                seen[command.command_id] = position
                # Even when the first copy was decided in this very batch, its status is
                # written at the first copy's position and only moved after the items: a
                # status already at the copy's position, with the item write lost in a
                # crash, would make the redelivered first copy look like a copy itself.
                plan.moves.append(StatusMove(command.command_id, position))
                if current is not None and current.last_offset < position.offset:
                    moved = with_exception_moved(current.state, command.command_id, position)
                    working[command.action_item_id] = StoredItem(
                        moved, current.partition, position.offset
                    )
            continue
        if current is not None and current.last_offset >= position.offset:
            plan.already_applied.append(record)
            continue
        owner = _key_owner(owners, record)
        outcome, new_state = _project(current.state if current else None, record, owner)
        key = command.idempotency_key_hash
        if key is not None and outcome.status == "applied" and owner is None:
            claim = KeyClaim(key, command.command_id, position)
            if claim.id not in owners:
                owners[claim.id] = claim
                plan.key_claims.append(claim)
        if (
            outcome.exception is not None
            and new_state is not None
            and current is not None
            and new_state.exception_count > current.state.exception_count
        ):
            plan.history.append(
                HistoryEntry(command.action_item_id, new_state.exception_count, outcome.exception)
            )
        if known_positions.get(command.command_id) == position:
            # Its status is stored already (written first, then a crash kept the item write
            # from happening, or moved here by a copy): the stored status stands, deciding
            # again must not rewrite it (a copy's own timestamps would replace the original's).
            plan.decided_before.append(record)
        else:
            plan.outcomes.append(outcome)
        if new_state is not None:
            working[command.action_item_id] = StoredItem(
                new_state, position.partition, position.offset
            )
    for item_id, item in working.items():
        before = stored.get(item_id)
        if before is None or item.last_offset != before.last_offset:
            plan.item_writes.append(
                ItemWrite(item, before.last_offset if before is not None else None, before)
            )
    return plan


def settled_outcomes(plan: BatchPlan) -> list[CommandOutcome]:
    """The plan's statuses as they stand once all its writes are done (moves applied).

    For a plan that covers the whole log (a test oracle), this is the final
    status of every command; the store itself writes the outcomes first and the
    moves last.
    """
    last = {m.command_id: m.position for m in plan.moves}
    settled = []
    for outcome in plan.outcomes:
        position = last.get(outcome.command_id)
        if position is not None and position.offset > outcome.position.offset:
            exception = outcome.exception
            if exception is not None:
                exception = replace(exception, partition=position.partition, offset=position.offset)
            outcome = replace(outcome, position=position, exception=exception)
        settled.append(outcome)
    return settled


def _key_owner(owners: Mapping[str, KeyClaim], record: CommandRecord) -> str | None:
    """Who first used the record's Idempotency-Key: the command API's verdict when the
    command carries one (schema v4 ``keyOwner``, decided at acceptance against the key
    registry, so on any item and any partition, and the same in every replay), otherwise
    who first applied it on the record's partition, before it in the log."""
    key = record.command.idempotency_key_hash
    if key is None:
        return None
    verdict = record.command.key_owner
    if verdict is not None and verdict != record.command.command_id:
        return verdict
    claim = owners.get(claim_id(key, record.position.partition))
    if claim is None or claim.position.offset > record.position.offset:
        return None  # none, or one from later in the log (a replay from further back)
    return claim.command_id


def _later(position: LogPosition, than: LogPosition) -> bool:
    return position.partition == than.partition and position.offset > than.offset


def _project(
    state: ActionItem | None, record: CommandRecord, key_owner: str | None
) -> tuple[CommandOutcome, ActionItem | None]:
    command, position = record.command, record.position
    decision = decide(state, command, key_owner)
    processed_at = timestamp(command.accepted_at)
    if isinstance(decision, Applied):
        outcome = CommandOutcome(
            command.command_id,
            command.action_item_id,
            "applied",
            None,
            processed_at,
            position,
            command.correlation_id,
        )
        return outcome, decision.state
    assert isinstance(decision, Rejected)
    entry = exception_entry(command, position, decision)
    outcome = CommandOutcome(
        command.command_id,
        command.action_item_id,
        "rejected",
        entry,
        processed_at,
        position,
        command.correlation_id,
    )
    new_state = with_exception(state, entry) if state is not None else None
    return outcome, new_state
