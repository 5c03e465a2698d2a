"""The projector's adapter to the store: load what a batch needs, write its effect, guarded.

No multi-document transactions (FerretDB has none): every write carries its own
guard, so a write repeated after a crash or raced by a second projector has no
second effect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pymongo import InsertOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from projector.batch import BatchPlan, CommandRecord, ItemWrite, StatusMove, plan_batch
from projector.documents import item_doc, item_from, status_doc
from projector.domain import LogPosition
from servicekit.read_model import ReadModel, active_read_model

log = logging.getLogger("projector.store")
DUPLICATE_KEY = 11000
MAX_CONFLICT_RETRIES = 20


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


class StoreUnavailable(Exception):
    """The store did not answer; nothing of the batch can be assumed written."""


class WriteConflict(Exception):
    """Another writer kept changing the same items; the batch was not completed."""


class ProjectionStore:
    def __init__(self, client: MongoClient, database: str, generation: str | None = None) -> None:
        self._client = client
        self._db = client[database]
        self._generation = generation

    def read_model(self) -> ReadModel:
        """The generation to write: a fixed one (rebuild) or the active one (run)."""
        if self._generation is not None:
            return ReadModel(self._db, self._generation)
        return active_read_model(self._db)

    def ping(self) -> None:
        try:
            self._client.admin.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def ensure_indexes(self) -> None:
        try:
            self.read_model().ensure_indexes()
        except (ConnectionFailure, OperationFailure) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def apply(self, records: Sequence[CommandRecord]) -> BatchPlan:
        """Plan and write a batch; retried from fresh state when a guard saw a racing writer."""
        try:
            for _ in range(MAX_CONFLICT_RETRIES):
                plan = self._apply_once(self.read_model(), records)
                if plan is not None:
                    return plan
            raise WriteConflict(f"batch still conflicting after {MAX_CONFLICT_RETRIES} attempts")
        except ConnectionFailure as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _apply_once(self, rm: ReadModel, records: Sequence[CommandRecord]) -> BatchPlan | None:
        item_ids = list({r.command.action_item_id for r in records})
        command_ids = list({r.command.command_id for r in records})
        stored = {d["_id"]: item_from(d) for d in rm.items.find({"_id": {"$in": item_ids}})}
        known = {
            d["_id"]: LogPosition(d["partition"], d["offset"])
            for d in rm.commands.find({"_id": {"$in": command_ids}}, {"partition": 1, "offset": 1})
        }
        plan = plan_batch(records, stored, known)
        if plan.outcomes:
            rm.commands.bulk_write(
                [
                    ReplaceOne({"_id": o.command_id}, status_doc(o), upsert=True)
                    for o in plan.outcomes
                ],
                ordered=False,
            )
        if not self._write_items(rm, plan.item_writes):
            return None
        if plan.moves:
            # after the items: a crash in between leaves the old position, so a redelivered
            # copy is still recognised as a copy and never applied a second time
            rm.commands.bulk_write(
                [op for m in plan.moves for op in status_move_ops(m)], ordered=False
            )
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
        return plan

    def _write_items(self, rm: ReadModel, writes: list[ItemWrite]) -> bool:
        """Compare-and-set every item; False when any guard failed (someone else wrote first)."""
        if not writes:
            return True
        ops: list[InsertOne | ReplaceOne] = []
        replaces = 0
        for write in writes:
            doc = item_doc(write.stored)
            if write.expected_last_offset is None:
                ops.append(InsertOne(doc))
            else:
                replaces += 1
                ops.append(
                    ReplaceOne(
                        {"_id": doc["_id"], "_log.lastOffset": write.expected_last_offset}, doc
                    )
                )
        try:
            result = rm.items.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            log.warning(
                "item created concurrently; re-planning batch", extra={"count": len(errors)}
            )
            return False
        if result.matched_count < replaces:
            log.warning(
                "item changed concurrently; re-planning batch",
                extra={"expected": replaces, "matched": result.matched_count},
            )
            return False
        return True
