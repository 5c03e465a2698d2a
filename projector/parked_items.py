"""The items parked in the store, as the consumer loop sees them: park, re-read, retry, publish.

An item whose write the store refuses (not an outage) is parked: its records
wait in the store in log order (projector/parking.py ``ParkingLot``), the
offsets are committed, and every other item goes on. This class keeps the
loop's copy of which items wait, retries the due ones with backoff (or at once
after ``projector release ITEM``), and publishes them to /readyz and /metrics.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from confluent_kafka import Message

from domain.planning import BatchPlan, CommandRecord
from domain.rules import LogPosition
from projector import metrics
from projector.health import Health
from projector.holds import HOLD_FIRST_RETRY_SECONDS
from projector.isolation import error_text
from projector.observation import log_outcomes, record_metrics
from projector.parking import ParkedItem, ParkedRecord, ParkingLot
from projector.ports import Projection
from projector.settings import ProjectorSettings
from schemas.codec import CommandCodec
from schemas.record_key import is_legacy_key
from servicekit.backoff import Backoff, RetryStopped, retry
from servicekit.store_errors import StoreRejected, StoreUnavailable

log = logging.getLogger("projector.run")


class ParkedItems:
    """The loop's copy of the parked items of its assignment, and what it does with them."""

    def __init__(
        self,
        lot: ParkingLot,
        settings: ProjectorSettings,
        projection: Projection,
        health: Health,
        stop: threading.Event,
        refresh_lag: Callable[[], None],
    ) -> None:
        self.lot = lot
        self.settings = settings
        self.projection = projection
        self.health = health
        self.stop = stop
        self.refresh_lag = refresh_lag
        self.codec = CommandCodec()
        self.items: dict[str, ParkedItem] = {}
        self._read_at = 0.0
        self._known = False  # the parked items of the assignment were read

    def forget_assignment(self) -> None:
        """The assignment changed: read its parked items before any of its records."""
        self._known = False

    def ids(self) -> set[str]:
        """The parked items of the current assignment (read from the store once per assignment)."""
        if not self._known:
            self.items = self.lot.items(self.health.assignment)
            self._known = True
            self.publish()
        return set(self.items)

    def park(
        self, parked: dict[str, tuple[list[CommandRecord], str]], batch: list[Message]
    ) -> bool:
        """Store the records of refused and already parked items; False: asked to stop."""
        by_position = {(int(m.partition() or 0), int(m.offset() or 0)): m for m in batch}
        for item_id, (records, error) in parked.items():
            raw = [
                ParkedRecord(
                    r.position.partition,
                    r.position.offset,
                    by_position[(r.position.partition, r.position.offset)].key(),
                    by_position[(r.position.partition, r.position.offset)].value(),
                )
                for r in records
            ]
            if not self._park_one(item_id, records, raw, error):
                return False
        self.publish()
        return True

    def _park_one(
        self, item_id: str, records: list[CommandRecord], raw: list[ParkedRecord], error: str
    ) -> bool:
        parking = self.lot
        earlier = self.items.get(item_id)
        first = records[0]
        delay = Backoff(HOLD_FIRST_RETRY_SECONDS, self.settings.hold_retry_max_seconds).delay(1)
        retry_at = earlier.retry_at if earlier else time.time() + delay

        def not_parked(exc: Exception, wait: float) -> None:
            self.refresh_lag()
            log.error(
                "parking failed; batch held, nothing committed; retrying",
                extra={"actionItemId": item_id, "error": str(exc), "retryInSeconds": wait},
            )

        try:
            retry(
                lambda: parking.park(item_id, first, raw, error, retry_at),
                retry_on=(StoreUnavailable, StoreRejected),
                backoff=Backoff(0.1, self.settings.store_retry_max_seconds),
                stop=self.stop,
                on_failure=not_parked,
            )
        except RetryStopped:
            return False
        metrics.PARKED_COMMANDS.inc(len(records))
        if earlier is not None:
            return True
        self.items[item_id] = ParkedItem(
            item_id,
            first.position.partition,
            first.position.offset,
            first.command.command_id,
            error,
            1,
            retry_at,
        )
        log.error(
            "item parked: the store refuses its write; its commands wait in the store in "
            "order, every other item goes on; retried with backoff, or now with "
            "`projector release ITEM` once the cause is gone",
            extra={
                "actionItemId": item_id,
                "commandId": first.command.command_id,
                "partition": first.position.partition,
                "offset": first.position.offset,
                "records": len(records),
                "error": error,
            },
        )
        return True

    def tend(self) -> None:
        """At most once a second: re-read the parked items of our partitions (a release
        request, another projector's parking) and retry the ones that are due."""
        if time.monotonic() - self._read_at < 1.0:
            return
        self._read_at = time.monotonic()
        try:
            self.items = self.lot.items(self.health.assignment)
        except (StoreUnavailable, StoreRejected) as exc:
            log.warning("could not read the parked items", extra={"error": str(exc)})
            return
        now = time.time()
        for item in list(self.items.values()):
            if item.retry_at <= now and not self.stop.is_set():
                self._retry(item)
        self.publish()

    def _retry(self, item: ParkedItem) -> None:
        try:
            raw = self.lot.records(item.item_id)
            records = []
            for r in raw:
                command = self.codec.decode(r.value)
                records.append(
                    CommandRecord(
                        LogPosition(r.partition, r.offset),
                        command,
                        legacy_key=is_legacy_key(r.key, command.command_id),
                    )
                )
            plan = self.projection.apply(records) if records else BatchPlan()
        except StoreUnavailable as exc:
            log.warning("parked item not retried: store unreachable", extra={"error": str(exc)})
            return
        except Exception as exc:
            attempts = item.attempts + 1
            delay = Backoff(HOLD_FIRST_RETRY_SECONDS, self.settings.hold_retry_max_seconds).delay(
                attempts
            )
            error = error_text(exc)
            with contextlib.suppress(StoreUnavailable, StoreRejected):
                self.lot.reschedule(item.item_id, attempts, time.time() + delay, error)
            self.items[item.item_id] = replace(
                item, attempts=attempts, retry_at=time.time() + delay, error=error
            )
            log.error(
                "parked item still refused",
                extra={
                    "actionItemId": item.item_id,
                    "commandId": item.command_id,
                    "attempt": attempts,
                    "retryInSeconds": delay,
                    "error": error,
                },
            )
            return
        try:
            self.lot.unpark(item.item_id, raw)
        except (StoreUnavailable, StoreRejected) as exc:
            log.warning("parked records applied, not yet removed", extra={"error": str(exc)})
            return  # applied: a retry finds them stored (the guards skip them)
        self.items.pop(item.item_id, None)
        record_metrics(plan)
        log_outcomes(plan)
        log.info(
            "parked item released: its commands went through",
            extra={
                "actionItemId": item.item_id,
                "commandId": item.command_id,
                "records": len(raw),
                "attempts": item.attempts + 1,
            },
        )

    def publish(self) -> None:
        self.health.parked = tuple(p.describe() for p in self.items.values())
        metrics.PARKED_ITEMS.set(len(self.items))
        metrics.PARKED_ITEM.clear()
        for p in self.items.values():
            metrics.PARKED_ITEM.labels(p.item_id, str(p.partition)).set(1)
