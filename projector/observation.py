"""What the projector tells of the batches it applied: metrics, a line per command, progress."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from domain.planning import BatchPlan
from projector import metrics

log = logging.getLogger("projector.run")
PROGRESS_SECONDS = 10.0


def record_metrics(plan: BatchPlan) -> None:
    for outcome in plan.outcomes:
        if outcome.status == "applied":
            metrics.APPLIED.inc()
        elif outcome.exception is not None:
            metrics.REJECTED.labels(str(outcome.exception.code)).inc()
    metrics.SKIPPED.labels("resent_copy").inc(len(plan.duplicates))
    metrics.SKIPPED.labels("already_applied").inc(len(plan.already_applied))
    metrics.SKIPPED.labels("status_stored").inc(len(plan.decided_before))


def log_outcomes(plan: BatchPlan) -> None:
    """One structured line per command: rejections at INFO, the rest at DEBUG."""
    debug = log.isEnabledFor(logging.DEBUG)
    for o in plan.outcomes:
        if o.exception is None and not debug:
            continue
        log.log(
            logging.DEBUG if o.exception is None else logging.INFO,
            "command %s",
            o.status,
            extra={
                "commandId": o.command_id,
                "correlationId": o.correlation_id,
                "actionItemId": o.action_item_id,
                "code": str(o.exception.code) if o.exception else None,
                "partition": o.position.partition,
                "offset": o.position.offset,
            },
        )
    if debug:
        skipped = [(r, "re-sent copy") for r in plan.duplicates]
        skipped += [(r, "redelivered, already applied") for r in plan.already_applied]
        skipped += [(r, "redelivered, status already stored") for r in plan.decided_before]
        for record, why in skipped:
            log.debug(
                "command skipped: %s",
                why,
                extra={
                    "commandId": record.command.command_id,
                    "correlationId": record.command.correlation_id,
                    "partition": record.position.partition,
                    "offset": record.position.offset,
                },
            )


@dataclass
class Progress:
    """Counts since the last progress line (INFO, every PROGRESS_SECONDS while busy)."""

    applied: int = 0
    rejected: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    batches: int = 0
    since: float = field(default_factory=time.monotonic)

    def add(self, plan: BatchPlan, dead_lettered: int) -> None:
        self.batches += 1
        self.dead_lettered += dead_lettered
        for o in plan.outcomes:
            if o.exception is None:
                self.applied += 1
            else:
                self.rejected += 1
        self.skipped += len(plan.duplicates) + len(plan.already_applied)

    def report_if_due(self) -> Progress:
        elapsed = time.monotonic() - self.since
        if elapsed < PROGRESS_SECONDS or not self.batches:
            return self
        log.info(
            "progress",
            extra={
                "applied": self.applied,
                "rejected": self.rejected,
                "skipped": self.skipped,
                "deadLettered": self.dead_lettered,
                "batches": self.batches,
                "commandsPerSecond": round((self.applied + self.rejected) / elapsed, 1),
            },
        )
        return Progress()
