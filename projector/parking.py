"""Parked items: an item whose writes the store refuses waits; every other item goes on.

When the store refuses a batch for a reason that is not an outage (a document
validator, an index key too large, a document over the size limit), the loop
finds the culprit *items* by bisecting the batch by item (``find_culprits``):
each half is applied on its own, a half that goes through is stored, a refused
half is split again, so k culprits among n items cost at most about
2k·log2(n) applies, whatever the batch's size. A culprit item is *parked*: its
records (raw key and value, with their log positions) are written to the
generation's ``parked_commands`` collection and the item to ``parked_items``,
and only then are the batch's offsets committed. Every later record of a
parked item is parked behind it, in log order. Parked records are retried
with backoff, or at once after ``projector release ITEM``; when they go
through they are removed and the item is live again.

Applying one item's records apart from the others is safe for the item's own
guards (its last offset, its commands' statuses); the partition's position
(what read-your-writes waits on) moves past a parked record, so the query API
also looks for a ``parked_items`` row at or before a token (docs/projector.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import InsertOne
from pymongo.errors import BulkWriteError

from domain.planning import BatchPlan, CommandRecord
from projector import metrics
from projector.ports import Projection
from servicekit.read_model import ReadModel, active_read_model
from servicekit.store_errors import StoreUnavailable, guarded
from servicekit.store_types import StoreClient

log = logging.getLogger("projector.parking")
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class ParkedRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class ParkedItem:
    item_id: str
    partition: int
    offset: int  # the first parked record
    command_id: str
    error: str
    attempts: int
    retry_at: float  # wall clock (time.time()), stored
    release_requested: bool = False

    def describe(self) -> str:
        wait = max(self.retry_at - time.time(), 0.0)
        return (
            f"item {self.item_id} parked at partition {self.partition} offset {self.offset} "
            f"(commandId {self.command_id}): the store refused its write {self.attempts} "
            f"time(s): {self.error}; its commands wait in order; next retry in {wait:.0f} s "
            f"(or now: projector release {self.item_id})"
        )


def item_from(doc: dict[str, Any]) -> ParkedItem:
    return ParkedItem(
        item_id=str(doc["_id"]),
        partition=int(doc["partition"]),
        offset=int(doc["offset"]),
        command_id=str(doc["commandId"]),
        error=str(doc["error"]),
        attempts=int(doc["attempts"]),
        retry_at=float(doc["retryAt"]),
        release_requested=bool(doc.get("releaseRequested", False)),
    )


class ParkingLot:
    """The store side of parking, in the active generation (every call is ``guarded``)."""

    def __init__(self, client: StoreClient, database: str) -> None:
        self._db = client[database]

    def _model(self) -> ReadModel:
        return active_read_model(self._db)

    def park(
        self,
        item_id: str,
        first: CommandRecord,
        records: Sequence[ParkedRecord],
        error: str,
        retry_at: float,
    ) -> None:
        """Write the records, then the item (so a parked item always has its records)."""

        def write() -> None:
            model = self._model()
            ops = [
                InsertOne(
                    {
                        "_id": f"{r.partition}:{r.offset}",
                        "itemId": item_id,
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": r.key,
                        "value": r.value,
                    }
                )
                for r in records
            ]
            if ops:
                try:
                    model.parked_commands.bulk_write(ops, ordered=False)
                except BulkWriteError as exc:
                    # a repeat (a crash before the commit, a redelivery) is a duplicate _id
                    others = [
                        e for e in exc.details.get("writeErrors", []) if e["code"] != DUPLICATE_KEY
                    ]
                    if others:
                        raise
            model.parked_items.update_one(
                {"_id": item_id},
                {
                    "$setOnInsert": {
                        "partition": first.position.partition,
                        "offset": first.position.offset,
                        "commandId": first.command.command_id,
                        "attempts": 1,
                        "retryAt": retry_at,
                        "parkedAt": time.time(),
                        "error": error,
                    },
                },
                upsert=True,
            )

        guarded(write)

    def items(self, partitions: Sequence[int] | None = None) -> dict[str, ParkedItem]:
        def read() -> dict[str, ParkedItem]:
            query: dict[str, Any] = {}
            if partitions is not None:
                query = {"partition": {"$in": list(partitions)}}
            return {str(d["_id"]): item_from(d) for d in self._model().parked_items.find(query)}

        # a refusal of this read is no reason to park anything: wait and retry it
        return guarded(read, refusal_is_outage=True)

    def records(self, item_id: str) -> list[ParkedRecord]:
        def read() -> list[ParkedRecord]:
            docs = self._model().parked_commands.find({"itemId": item_id})
            out = [ParkedRecord(d["partition"], d["offset"], d["key"], d["value"]) for d in docs]
            return sorted(out, key=lambda r: (r.partition, r.offset))

        return guarded(read)

    def unpark(self, item_id: str, records: Sequence[ParkedRecord]) -> None:
        """Remove the applied records; the item goes when none of its records is left."""

        def write() -> None:
            model = self._model()
            ids = [f"{r.partition}:{r.offset}" for r in records]
            model.parked_commands.delete_many({"_id": {"$in": ids}})
            if model.parked_commands.find_one({"itemId": item_id}, {"_id": 1}) is None:
                model.parked_items.delete_one({"_id": item_id})

        guarded(write)

    def reschedule(self, item_id: str, attempts: int, retry_at: float, error: str) -> None:
        guarded(
            lambda: self._model().parked_items.update_one(
                {"_id": item_id},
                {
                    "$set": {
                        "attempts": attempts,
                        "retryAt": retry_at,
                        "error": error,
                        "releaseRequested": False,
                    }
                },
            )
        )

    def request_release(self, item_id: str) -> ParkedItem | None:
        """`projector release ITEM`: retry the item's parked commands now (None: not parked)."""
        doc = guarded(
            lambda: self._model().parked_items.find_one_and_update(
                {"_id": item_id}, {"$set": {"releaseRequested": True, "retryAt": 0.0}}
            )
        )
        return item_from(doc) if doc else None


@dataclass
class Culprits:
    """What bisecting a refused batch by item found: the stored plans and the refused items."""

    plans: list[BatchPlan]
    refused: dict[str, str]  # item id -> the store's refusal
    applies: int = 0


def find_culprits(
    projection: Projection,
    records: Sequence[CommandRecord],
    first_error: str,
    on_step: Callable[[], None] = lambda: None,
) -> Culprits:
    """Apply the refused batch in halves by item until every refused item stands alone.

    ``first_error`` is the refusal of the whole batch (the culprit's, when the
    batch is a single item).
    """
    by_item: dict[str, list[CommandRecord]] = {}
    for record in records:
        by_item.setdefault(record.command.action_item_id, []).append(record)
    found = Culprits([], {})

    def attempt(items: list[str]) -> None:
        group = [r for item in items for r in by_item[item]]
        group.sort(key=lambda r: (r.position.partition, r.position.offset))
        on_step()
        found.applies += 1
        try:
            found.plans.append(projection.apply(group))
            return
        except StoreUnavailable:
            raise
        except Exception as exc:
            if len(items) == 1:
                found.refused[items[0]] = _error_text(exc)
                return
        half = len(items) // 2
        attempt(items[:half])
        attempt(items[half:])

    items = list(by_item)
    if len(items) == 1:
        found.refused[items[0]] = first_error
    else:
        half = len(items) // 2
        attempt(items[:half])
        attempt(items[half:])
    metrics.RECORD_FAILURES.inc(len(found.refused))
    return found


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."
