"""Applying one batch: load what it touches, plan it (pure), write the plan; again on a race.

The store adapter (projector/store.py) only loads and writes; the decisions are
domain.planning.plan_batch's. A write whose compare-and-set guard finds that
another writer changed an item first reports a conflict, and the batch is
planned again from fresh state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain.planning import BatchPlan, CommandRecord, plan_batch
from projector.store import LoadedBatch, ProjectionStore
from servicekit.store_errors import StoreRejected

MAX_CONFLICT_RETRIES = 20


class WriteConflict(StoreRejected):
    """Another writer kept changing the same items; the batch was not completed."""


class BatchStore(Protocol):
    def load(self, records: Sequence[CommandRecord]) -> LoadedBatch: ...
    def write(self, plan: BatchPlan, loaded: LoadedBatch) -> bool: ...


def apply_batch(store: BatchStore, records: Sequence[CommandRecord]) -> BatchPlan:
    """Load -> plan -> write; re-planned from fresh state while a guard sees a racing writer."""
    for _ in range(MAX_CONFLICT_RETRIES):
        loaded = store.load(records)
        plan = plan_batch(records, loaded.items, loaded.positions, loaded.claims)
        if store.write(plan, loaded):
            return plan
    raise WriteConflict(f"batch still conflicting after {MAX_CONFLICT_RETRIES} attempts")


class StoreProjection:
    """The loop's and the rebuild's ``Projection``: ``apply_batch`` over a ``ProjectionStore``."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def apply(self, records: Sequence[CommandRecord]) -> BatchPlan:
        return apply_batch(self.store, records)

    def ping(self) -> None:
        self.store.ping()

    def ensure_indexes(self) -> None:
        self.store.ensure_indexes()
