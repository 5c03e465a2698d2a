"""`projector rebuild`: replay the whole log into a fresh generation, then swap it in.

Phases (see docs/rebuild.md):
1. build: read every partition from its start to the high watermark seen at the
   start into a new generation, with the same idempotent apply as `run`;
2. catch up: repeat to the moving end until little is left;
3. hand over: ask running projectors to pause between batches, wait until all
   live ones hold, catch up to the end once more, swap the active-generation
   pointer (one single-document write: readers switch atomically), release;
4. keep the previous generation for rollback, drop the one before it.

On any failure or Ctrl-C the pause is released, the live model is untouched
and the half-built generation is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka import Message
from pymongo.errors import PyMongoError

from projector.apply import apply_batch
from projector.consumer import decode_batch
from projector.handover import HandoverControl
from projector.log_reader import LogReader, PartitionRange
from projector.rebuild_lease import RebuildLease, drop_abandoned
from projector.store import ProjectionStore
from schemas.codec import CommandCodec
from servicekit.read_model import (
    INITIAL_GENERATION,
    META_COLLECTION,
    POINTER_ID,
    ReadModel,
    active_generation,
    swap_active_generation,
)
from servicekit.store_types import StoreClient

log = logging.getLogger("projector.rebuild")
STATS_ID = "last_rebuild"
ASSUMED_RATE = 10_000.0
CATCH_UP_ROUNDS = 5
CATCH_UP_ENOUGH = 2_000


class RebuildFailed(Exception):
    """The rebuild stopped; the message says what failed and what state things are in."""


class Progress(Protocol):
    def phase(self, name: str, total: int) -> None: ...
    def advance(self, records: int) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class RebuildOptions:
    dry_run: bool = False
    into: str | None = None
    until_offsets: dict[int, int] | None = None
    until_time: datetime | None = None
    batch_size: int = 2000
    pause_timeout: float = 30.0

    @property
    def forensic(self) -> bool:
        return self.into is not None


@dataclass
class RebuildResult:
    generation: str | None
    records: int
    applied_records: int = 0
    undecodable: int = 0
    seconds: float = 0.0
    swapped: bool = False
    previous: str | None = None
    dropped: str | None = None
    estimate_seconds: float | None = None
    ranges: list[dict[str, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.applied_records / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "records": self.records,
            "appliedRecords": self.applied_records,
            "undecodable": self.undecodable,
            "seconds": round(self.seconds, 3),
            "recordsPerSecond": round(self.rate, 1),
            "swapped": self.swapped,
            "previousGeneration": self.previous,
            "droppedGeneration": self.dropped,
            "estimateSeconds": self.estimate_seconds,
            "partitions": self.ranges,
        }


def new_generation_name() -> str:
    return f"r{datetime.now(UTC):%Y%m%d%H%M%S}{uuid.uuid4().hex[:4]}"


class Rebuild:
    def __init__(
        self,
        client: StoreClient,
        database: str,
        reader: LogReader,
        progress: Progress,
        stop: threading.Event,
        options: RebuildOptions,
    ) -> None:
        self.client = client
        self.db = client[database]
        self.reader = reader
        self.progress = progress
        self.stop = stop
        self.options = options
        self.codec = CommandCodec()
        self.control = HandoverControl(self.db)

    # -- entry point -------------------------------------------------------
    def run(self) -> RebuildResult:
        ranges = self._target_ranges()
        total = sum(r.records for r in ranges)
        result = RebuildResult(
            generation=None,
            records=total,
            ranges=[{"partition": r.partition, "low": r.low, "end": r.end} for r in ranges],
        )
        if self.options.dry_run:
            rate, _known = self.last_rate()
            result.estimate_seconds = round(total / rate, 1) if rate else None
            return result
        generation = self.options.into or new_generation_name()
        for abandoned in drop_abandoned(self.db):
            self.progress.message(
                f"dropped the half-built generation {abandoned} of a killed rebuild"
            )
        self._refuse_existing(generation)
        result.generation = generation
        model = ReadModel(self.db, generation)
        request_id: str | None = None
        started = time.monotonic()
        try:
            with RebuildLease(self.db, generation):
                store = ProjectionStore(self.client, self.db.name, generation)
                reached = self._build(store, ranges, result)
                # indexes built once over the finished documents are far cheaper than
                # maintained per write (measured on DocumentDB: 2-8x per batch)
                self.progress.message("building indexes of the new generation")
                model.ensure_indexes()
                if not self.options.forensic:
                    reached = self._catch_up(store, reached, result)
                    request_id = uuid.uuid4().hex
                    self._pause_projectors(request_id)
                    self._final_catch_up(store, reached, result)
                    result.previous = (
                        swap_active_generation(self.db, generation) or INITIAL_GENERATION
                    )
                    result.swapped = True
                    self.control.release(request_id)
                    request_id = None
                    result.dropped = self._drop_older(result.previous, generation)
                result.seconds = time.monotonic() - started
                self._remember_rate(result)
                return result
        except BaseException as exc:
            self._abort(model, request_id, result, exc)
            raise

    # -- phases -------------------------------------------------------------
    def _target_ranges(self) -> list[PartitionRange]:
        if self.options.until_time is not None:
            return self.reader.ranges_until_time(self.options.until_time)
        ranges = self.reader.ranges()
        if self.options.until_offsets is not None:
            limits = self.options.until_offsets
            unknown = set(limits) - {r.partition for r in ranges}
            if unknown:
                raise RebuildFailed(
                    f"--until-offset names partitions the topic lacks: {sorted(unknown)}"
                )
            ranges = [
                PartitionRange(r.partition, r.low, min(r.end, limits.get(r.partition, r.end)))
                for r in ranges
            ]
        return ranges

    def _build(
        self, store: ProjectionStore, ranges: list[PartitionRange], result: RebuildResult
    ) -> dict[int, int]:
        self.progress.phase("replaying the log", sum(r.records for r in ranges))
        return self._read(
            store,
            {r.partition: r.low for r in ranges},
            {r.partition: r.end for r in ranges},
            result,
        )

    def _catch_up(
        self, store: ProjectionStore, reached: dict[int, int], result: RebuildResult
    ) -> dict[int, int]:
        for _ in range(CATCH_UP_ROUNDS):
            end = {r.partition: r.end for r in self.reader.ranges()}
            behind = sum(max(end[p] - reached.get(p, 0), 0) for p in end)
            if behind <= CATCH_UP_ENOUGH:
                break
            self.progress.phase("catching up with new commands", behind)
            reached = self._read(store, {p: reached.get(p, 0) for p in end}, end, result)
        return reached

    def _pause_projectors(self, request_id: str) -> None:
        if not self.control.request_pause(request_id):
            raise RebuildFailed(
                "another rebuild holds the hand-over; wait for it to finish (or, if it died, "
                f"clear it: db.{META_COLLECTION}.updateOne({{_id: 'handover'}}, "
                "{$set: {requestId: null}}))"
            )
        self.progress.message("asking running projectors to pause between batches")
        deadline = time.monotonic() + self.options.pause_timeout
        waiting = self.control.not_yet_paused(request_id)
        while waiting:
            if self.stop.is_set():
                raise KeyboardInterrupt
            if time.monotonic() > deadline:
                raise RebuildFailed(
                    f"projectors {waiting} did not pause within {self.options.pause_timeout:g} s "
                    "(busy or stuck on the store); nothing was swapped. Check their /readyz and "
                    "logs, then run the rebuild again."
                )
            time.sleep(0.05)
            waiting = self.control.not_yet_paused(request_id)

    def _final_catch_up(
        self, store: ProjectionStore, reached: dict[int, int], result: RebuildResult
    ) -> None:
        end = {r.partition: r.end for r in self.reader.ranges()}
        behind = sum(max(end[p] - reached.get(p, 0), 0) for p in end)
        self.progress.phase("final catch-up while projectors hold", behind)
        self._read(store, {p: reached.get(p, 0) for p in end}, end, result)
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _read(
        self,
        store: ProjectionStore,
        start: dict[int, int],
        end: dict[int, int],
        result: RebuildResult,
    ) -> dict[int, int]:
        def apply(messages: list[Message]) -> None:
            good, bad = decode_batch(self.codec, messages)
            result.undecodable += len(bad)
            if good:
                apply_batch(store, good)
            result.applied_records += len(messages)
            self.progress.advance(len(messages))

        reached = self.reader.read(start, end, apply, self.stop, self.options.batch_size)
        if self.stop.is_set():
            raise KeyboardInterrupt
        return reached

    # -- bookkeeping --------------------------------------------------------
    def _refuse_existing(self, generation: str) -> None:
        if generation == active_generation(self.db):
            raise RebuildFailed(f"generation {generation!r} is the active read model")
        existing = set(self.db.list_collection_names())
        clash = [n for n in ReadModel(self.db, generation).collection_names() if n in existing]
        if clash:
            raise RebuildFailed(
                f"collections {clash} already exist; choose another --into name or drop them"
            )

    def _drop_older(self, previous: str, new: str) -> str | None:
        """Keep the previous generation for rollback; drop the one that was kept before it."""
        meta = self.db[META_COLLECTION]
        pointer = meta.find_one({"_id": POINTER_ID}) or {}
        older = pointer.get("previous")
        meta.update_one({"_id": POINTER_ID}, {"$set": {"previous": previous}})
        if older and older not in (previous, new):
            ReadModel(self.db, str(older)).drop()
            return str(older)
        return None

    def last_rate(self) -> tuple[float, bool]:
        doc = self.db[META_COLLECTION].find_one({"_id": STATS_ID})
        if doc and doc.get("recordsPerSecond"):
            return float(doc["recordsPerSecond"]), True
        return ASSUMED_RATE, False

    def _remember_rate(self, result: RebuildResult) -> None:
        if result.applied_records >= 1000:
            self.db[META_COLLECTION].update_one(
                {"_id": STATS_ID},
                {"$set": {"recordsPerSecond": result.rate, "at": datetime.now(UTC)}},
                upsert=True,
            )

    def _abort(
        self, model: ReadModel, request_id: str | None, result: RebuildResult, exc: BaseException
    ) -> None:
        log.error("rebuild failed; cleaning up", extra={"error": repr(exc)})
        with contextlib.suppress(PyMongoError):
            if request_id is not None:
                self.control.release(request_id)
        if result.swapped:
            return  # the new generation is live; nothing to undo
        try:
            model.drop()
        except PyMongoError as drop_error:
            raise RebuildFailed(
                f"{exc}; and the half-built generation {model.generation!r} could not be dropped "
                f"({drop_error}): drop collections {model.collection_names()} by hand"
            ) from exc


def estimate_text(result: RebuildResult, known_rate: bool) -> str:
    if result.estimate_seconds is None:
        return "unknown"
    basis = "from the last rebuild's rate" if known_rate else f"assuming {ASSUMED_RATE:,.0f}/s"
    return f"{result.estimate_seconds:,.1f} s ({basis})"
