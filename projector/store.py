"""The projector's adapter to the store: load what a batch needs, write its plan, guarded.

It makes no decision: projector/apply.py loads with ``load``, plans with the
domain, and writes with ``write``.

No multi-document transactions (FerretDB has none): every write carries its own
guard, so a write repeated after a crash or raced by a second projector has no
second effect. The write order is what the exactly-once argument rests on
(docs/projector.md): command statuses, then items (compare-and-set on their
last offset), then status moves to re-sent copies (legacy-keyed records only,
see domain/planning.py), then the positions the query API waits on. Within one
step the writes are independent (one document each), so a step's bulk is split
into chunks written concurrently; the next step starts only when every chunk of
the previous one is done.

Issue 16 adds two inserts to the first step, beside the statuses: the
Exceptions history records and the Idempotency-Key claims (keyed by what they
record, so a repeat is a duplicate _id and ignored); an item write is a
``$set`` of the fields the batch changed, and a move also moves the command's
history record. No write carries an item's history: one command costs the
same on an item that has seen a hundred thousand.

Errors leave this module as ours (servicekit/store_errors.py): ``StoreUnavailable``
(the store did not answer: retry the batch) or ``StoreRejected`` (it answered with
a refusal).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from domain.planning import (
    BatchPlan,
    CommandRecord,
    ItemWrite,
    KeyClaim,
    StatusMove,
    StoredItem,
    claim_id,
)
from domain.rules import LogPosition
from projector.documents import (
    claim_doc,
    claim_from,
    history_doc,
    is_legacy_item,
    item_changes,
    item_doc,
    item_from,
    status_doc,
)
from servicekit.read_model import ReadModel, active_read_model
from servicekit.store_errors import StoreRejected, StoreUnavailable, guarded
from servicekit.store_types import StoreClient, StoreCollection, WriteOp

__all__ = ["LoadedBatch", "ProjectionStore", "StoreRejected", "StoreUnavailable"]

log = logging.getLogger("projector.store")
DUPLICATE_KEY = 11000
CHUNK = 200
# MongoDB: "... index: _id_ dup key: ..."; FerretDB: "... Index '_id_'"
_ID_INDEX = re.compile(r"index:? '?_id_'?(\s|$)", re.IGNORECASE)

Op = WriteOp


def status_move_ops(move: StatusMove) -> list[UpdateOne]:
    """Point a stored status (and its exception, if rejected) at a later copy's position."""
    at = {"partition": move.position.partition, "offset": move.position.offset}
    guard = {"_id": move.command_id, "offset": {"$lt": move.position.offset}}
    return [
        UpdateOne({**guard, "exception": None}, {"$set": at}),
        UpdateOne(
            {**guard, "exception": {"$ne": None}},
            {
                "$set": {
                    **at,
                    "exception.partition": at["partition"],
                    "exception.offset": at["offset"],
                }
            },
        ),
    ]


def history_move_op(move: StatusMove) -> UpdateOne:
    """Point a command's Exceptions history record (if it has one) at a later copy's position."""
    return UpdateOne(
        {"_id": move.command_id, "offset": {"$lt": move.position.offset}},
        {"$set": {"partition": move.position.partition, "offset": move.position.offset}},
    )


def is_id_duplicate(error: dict[str, Any]) -> bool:
    """A duplicate-key write error on ``_id`` (a racing writer), not on another unique index."""
    if error.get("code") != DUPLICATE_KEY:
        return False
    pattern = error.get("keyPattern")
    if isinstance(pattern, dict):
        return list(pattern) == ["_id"]
    return bool(_ID_INDEX.search(str(error.get("errmsg", ""))))


@dataclass(frozen=True)
class LoadedBatch:
    """What a batch's planning needs from the store, and the generation it was read from."""

    target: ReadModel
    items: dict[str, StoredItem]  # the stored items the batch touches
    positions: dict[str, LogPosition]  # the stored position of each of its known commands
    claims: dict[str, KeyClaim] = field(default_factory=dict)  # by claim_id
    legacy: frozenset[str] = frozenset()  # items stored in the pre-issue-16 shape


@dataclass
class BulkOutcome:
    matched: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class ProjectionStore:
    def __init__(
        self,
        client: StoreClient,
        database: str,
        generation: str | None = None,
        write_concurrency: int = 4,
    ) -> None:
        self._client = client
        self._db = client[database]
        self._generation = generation
        self._concurrency = max(1, write_concurrency)
        self._pool = (
            ThreadPoolExecutor(self._concurrency, thread_name_prefix="store-write")
            if self._concurrency > 1
            else None
        )

    def read_model(self) -> ReadModel:
        """The generation to write: a fixed one (rebuild) or the active one (run)."""
        if self._generation is not None:
            return ReadModel(self._db, self._generation)
        return active_read_model(self._db)

    def ping(self) -> None:
        guarded(lambda: self._client.admin.command("ping"))

    def ensure_indexes(self) -> None:
        guarded(lambda: self.read_model().ensure_indexes())

    def load(self, records: Sequence[CommandRecord]) -> LoadedBatch:
        """The stored items and command positions a batch touches, from the generation to write."""

        def load() -> LoadedBatch:
            rm = self.read_model()
            item_ids = list({r.command.action_item_id for r in records})
            command_ids = list({r.command.command_id for r in records})
            docs = list(rm.items.find({"_id": {"$in": item_ids}}))
            items = {d["_id"]: item_from(d) for d in docs}
            legacy = frozenset(d["_id"] for d in docs if is_legacy_item(d))
            positions = {
                d["_id"]: LogPosition(d["partition"], d["offset"])
                for d in rm.commands.find(
                    {"_id": {"$in": command_ids}}, {"partition": 1, "offset": 1}
                )
            }
            claim_ids = list(
                {
                    claim_id(r.command.idempotency_key_hash, r.position.partition)
                    for r in records
                    if r.command.idempotency_key_hash is not None
                }
            )
            claims = (
                {d["_id"]: claim_from(d) for d in rm.key_claims.find({"_id": {"$in": claim_ids}})}
                if claim_ids
                else {}
            )
            return LoadedBatch(rm, items, positions, claims, legacy)

        return guarded(load)

    def write(self, plan: BatchPlan, loaded: LoadedBatch) -> bool:
        """Write a plan into the generation it was loaded from, in the order that keeps it
        exactly-once; False when an item's guard found a racing writer (plan again).
        """
        return guarded(lambda: self._write(loaded, plan))

    def _write(self, loaded: LoadedBatch, plan: BatchPlan) -> bool:
        rm = loaded.target
        # every outcome is for a command with no stored status yet (the planner keeps a
        # stored one), so a plain insert does; a duplicate _id is a racing projector (or an
        # attempt cut short by a crash) that wrote the same, deterministic, status first.
        # History records and key claims are the same kind of write: deterministic content
        # under an _id that names what they record.
        statuses = self._bulk(rm.commands, [InsertOne(status_doc(o)) for o in plan.outcomes])
        self._raise_unless_id_duplicates(statuses, "command status")
        history = self._bulk(rm.exceptions, [InsertOne(history_doc(h)) for h in plan.history])
        self._raise_unless_id_duplicates(history, "Exceptions history")
        claims = self._bulk(rm.key_claims, [InsertOne(claim_doc(c)) for c in plan.key_claims])
        self._raise_unless_id_duplicates(claims, "Idempotency-Key claim")
        if not self._write_items(rm, plan.item_writes, loaded.legacy):
            return False
        if plan.moves:
            # after the items: a crash in between leaves the old position, so a redelivered
            # copy is still recognised as a copy and never applied a second time
            moved = self._bulk(rm.commands, [op for m in plan.moves for op in status_move_ops(m)])
            self._raise_unless_id_duplicates(moved, "status move")
            moved = self._bulk(rm.exceptions, [history_move_op(m) for m in plan.moves])
            self._raise_unless_id_duplicates(moved, "history move")
        if plan.next_offsets:
            rm.positions.bulk_write(
                [
                    UpdateOne(
                        {"_id": str(partition)},
                        {"$max": {"nextOffset": offset}, "$set": {"partition": partition}},
                        upsert=True,
                    )
                    for partition, offset in sorted(plan.next_offsets.items())
                ],
                ordered=False,
            )
        return True

    def _write_items(
        self, rm: ReadModel, writes: list[ItemWrite], legacy: frozenset[str] = frozenset()
    ) -> bool:
        """Compare-and-set every item; False when any guard failed (someone else wrote first).

        A new item is inserted; a stored one gets a ``$set`` of the fields the batch
        changed (never its history), guarded by its last offset. An item still in the
        pre-issue-16 shape is replaced whole once (bounded from then on).
        """
        if not writes:
            return True
        ops: list[Op] = []
        replaces = 0
        for write in writes:
            if write.expected_last_offset is None:
                ops.append(InsertOne(item_doc(write.stored)))
                continue
            replaces += 1
            guard = {"_id": write.stored.state.id, "_log.lastOffset": write.expected_last_offset}
            if write.before is None or write.stored.state.id in legacy:
                ops.append(ReplaceOne(guard, item_doc(write.stored)))
            else:
                ops.append(UpdateOne(guard, {"$set": item_changes(write.before, write.stored)}))
        outcome = self._bulk(rm.items, ops)
        self._raise_unless_id_duplicates(outcome, "item")
        if outcome.errors:
            log.warning(
                "item created concurrently; re-planning batch",
                extra={"count": len(outcome.errors)},
            )
            return False
        if outcome.matched < replaces:
            log.warning(
                "item changed concurrently; re-planning batch",
                extra={"expected": replaces, "matched": outcome.matched},
            )
            return False
        return True

    def _bulk(self, collection: StoreCollection, ops: list[Op]) -> BulkOutcome:
        """Unordered bulk write, in concurrent chunks; write errors are returned, not raised."""
        if not ops:
            return BulkOutcome()
        chunks = [ops[i : i + CHUNK] for i in range(0, len(ops), CHUNK)]
        if self._pool is None or len(chunks) == 1:
            results = [_bulk_chunk(collection, chunk) for chunk in chunks]
        else:
            results = list(self._pool.map(lambda c: _bulk_chunk(collection, c), chunks))
        total = BulkOutcome()
        for result in results:
            total.matched += result.matched
            total.errors.extend(result.errors)
        return total

    @staticmethod
    def _raise_unless_id_duplicates(outcome: BulkOutcome, what: str) -> None:
        refused = [e for e in outcome.errors if not is_id_duplicate(e)]
        if refused:
            first = refused[0]
            raise StoreRejected(
                f"{len(refused)} {what} write(s) refused, first: code {first.get('code')}: "
                f"{first.get('errmsg')}"
            )


def _bulk_chunk(collection: StoreCollection, ops: list[Op]) -> BulkOutcome:
    try:
        result = collection.bulk_write(ops, ordered=False)
        return BulkOutcome(result.matched_count)
    except BulkWriteError as exc:
        return BulkOutcome(int(exc.details.get("nMatched", 0)), exc.details.get("writeErrors", []))
