"""A batch the store refuses (not an outage): find what it refuses, let the rest through.

With parking (``apply_or_park``, what `projector run` does): bisect by item
(projector/parking.py) and park the refused items; every other item goes on.
Without (``apply_or_isolate``, kept for a loop built without a parking lot):
apply it partition by partition, then record by record, to find the first
record each partition cannot get past.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, fields

from domain.planning import BatchPlan, CommandRecord
from projector import metrics
from projector.parking import find_culprits
from projector.ports import Projection
from servicekit.store_errors import StoreRejected, StoreUnavailable

log = logging.getLogger("projector.run")


@dataclass
class StoredBatch:
    """What the store took of a batch, and per partition the first record it refused."""

    plan: BatchPlan
    refused: dict[int, tuple[CommandRecord, str]] = field(default_factory=dict)
    # item id -> its records of the batch (log order) and why they wait: to be parked
    parked: dict[str, tuple[list[CommandRecord], str]] = field(default_factory=dict)


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def apply_or_isolate(projection: Projection, records: list[CommandRecord]) -> StoredBatch:
    """Apply the batch; when refused, isolate the culprits. ``StoreUnavailable`` goes through."""
    try:
        return StoredBatch(projection.apply(records))
    except StoreUnavailable:
        raise
    except Exception as exc:
        ping_or_outage(projection, exc)
        log.error(
            "the store refused the batch for a reason other than an outage; "
            "applying its partitions, then its records, one by one to find the culprit",
            extra={"records": len(records), "error": error_text(exc)},
            exc_info=not isinstance(exc, StoreRejected),  # a trace only for the unexpected
        )
        return isolate(projection, records)


def apply_or_park(
    projection: Projection,
    records: list[CommandRecord],
    parked_items: Collection[str],
    on_step: Callable[[], None] = lambda: None,
) -> StoredBatch:
    """Apply the batch; the records of parked items wait behind them; when the store refuses,
    bisect by item and park the refused items. ``StoreUnavailable`` goes through."""
    waiting: dict[str, list[CommandRecord]] = {}
    rest: list[CommandRecord] = []
    for record in records:
        item = record.command.action_item_id
        (waiting.setdefault(item, []) if item in parked_items else rest).append(record)
    parked = {item: (recs, "parked behind an earlier command") for item, recs in waiting.items()}
    if not rest:
        return StoredBatch(BatchPlan(), parked=parked)
    try:
        return StoredBatch(projection.apply(rest), parked=parked)
    except StoreUnavailable:
        raise
    except Exception as exc:
        ping_or_outage(projection, exc)
        log.error(
            "the store refused the batch for a reason other than an outage; "
            "bisecting it by item to park the refused items, the others go on",
            extra={"records": len(rest), "error": error_text(exc)},
            exc_info=not isinstance(exc, StoreRejected),
        )
        found = find_culprits(projection, rest, error_text(exc), on_step)
    every = {r.command.action_item_id for r in rest}
    if len(every) > 1 and set(found.refused) == every:
        # not one bad item: the store refuses everything (a full disk, a broken collection);
        # wait and retry the batch as in an outage rather than park every item
        raise StoreUnavailable(
            f"the store refuses the writes of every item of the batch ({len(every)} items), "
            f"first: {next(iter(found.refused.values()))}"
        )
    for item, error in found.refused.items():
        parked[item] = ([r for r in rest if r.command.action_item_id == item], error)
    log.info(
        "bisected a refused batch by item",
        extra={"records": len(rest), "applies": found.applies, "refused": sorted(found.refused)},
    )
    return StoredBatch(merge_plans(found.plans), parked=parked)


def ping_or_outage(projection: Projection, cause: Exception) -> None:
    """An outage in disguise (e.g. the store's own database gone) is retried as an outage."""
    try:
        projection.ping()
    except (StoreUnavailable, StoreRejected) as exc:
        raise StoreUnavailable(
            f"{error_text(cause)}; and the store does not answer a ping: {exc}"
        ) from cause


def isolate(projection: Projection, records: list[CommandRecord]) -> StoredBatch:
    by_partition: dict[int, list[CommandRecord]] = {}
    for record in records:
        by_partition.setdefault(record.position.partition, []).append(record)
    plans: list[BatchPlan] = []
    refused: dict[int, tuple[CommandRecord, str]] = {}
    for partition, part in by_partition.items():
        try:
            plans.append(projection.apply(part))
            continue
        except StoreUnavailable:
            raise
        except Exception:
            log.debug("partition refused as a whole", extra={"partition": partition})
        for record in part:
            try:
                plans.append(projection.apply([record]))
            except StoreUnavailable:
                raise
            except Exception as exc:
                metrics.RECORD_FAILURES.inc()
                refused[partition] = (record, error_text(exc))
                break
    return StoredBatch(merge_plans(plans), refused)


def merge_plans(plans: Sequence[BatchPlan]) -> BatchPlan:
    """One plan from the plans of parts of a batch (lists concatenated, next offsets maxed)."""
    merged = BatchPlan()
    for plan in plans:
        for f in fields(BatchPlan):
            value, target = getattr(plan, f.name), getattr(merged, f.name)
            if isinstance(value, list):
                target.extend(value)
            elif isinstance(value, dict):
                for key, offset in value.items():
                    target[key] = max(target.get(key, offset), offset)
    return merged
