"""Finding the items a store refuses by bisecting the batch by item (projector/parking.py).

The projection here is a stand-in that refuses the records of chosen items: what is
tested is the search (who is parked, what goes through, how many applies), not the
store; tests/e2e/test_projector_poison.py does it with a real refusal.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

import pytest

from domain.planning import BatchPlan, CommandRecord, plan_batch
from domain.rules import LogPosition
from projector.isolation import apply_or_park
from servicekit.store_errors import StoreRejected, StoreUnavailable
from tests.unit.builders import create, update


class RefusingProjection:
    def __init__(self, refused: set[str], down: bool = False) -> None:
        self.refused = refused
        self.down = down
        self.applied: list[CommandRecord] = []
        self.calls = 0

    def apply(self, records: Sequence[CommandRecord]) -> BatchPlan:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("gone")
        bad = {r.command.action_item_id for r in records} & self.refused
        if bad:
            raise StoreRejected(f"document failed validation: {sorted(bad)[0]}")
        self.applied += records
        return plan_batch(records, {}, {})

    def ping(self) -> None:
        if self.down:
            raise StoreUnavailable("gone")

    def ensure_indexes(self) -> None:
        pass


def batch(items: list[str], per_item: int = 3) -> list[CommandRecord]:
    out = []
    offsets = [0, 0, 0]
    for n in range(per_item):
        for item in items:
            p = hash(item) % 3
            command = create(item, at=n) if n == 0 else update(item, title=f"t{n}", at=n)
            out.append(CommandRecord(LogPosition(p, offsets[p]), command))
            offsets[p] += 1
    return out


def test_two_bad_items_among_a_hundred_are_found_in_few_applies() -> None:
    items = [str(uuid.uuid4()) for _ in range(100)]
    bad = {items[17], items[80]}
    projection = RefusingProjection(bad)
    records = batch(items)
    stored = apply_or_park(projection, records, parked_items=set())
    assert set(stored.parked) == bad
    for item in bad:
        waiting, error = stored.parked[item]
        assert [r.position for r in waiting] == [
            r.position for r in records if r.command.action_item_id == item
        ]
        assert "failed validation" in error
    assert sorted((r.position.partition, r.position.offset) for r in projection.applied) == sorted(
        (r.position.partition, r.position.offset)
        for r in records
        if r.command.action_item_id not in bad
    )  # every other record once
    # the whole batch once, then at most 2 applies per level per culprit
    assert projection.calls <= 1 + 2 * len(bad) * math.ceil(math.log2(len(items)))


def test_records_of_a_parked_item_wait_behind_it_without_being_applied() -> None:
    items = [str(uuid.uuid4()) for _ in range(5)]
    projection = RefusingProjection(set())
    stored = apply_or_park(projection, batch(items), parked_items={items[2]})
    assert set(stored.parked) == {items[2]}
    assert all(r.command.action_item_id != items[2] for r in projection.applied)
    assert projection.calls == 1


def test_a_store_that_refuses_every_item_is_waited_for_not_parked() -> None:
    items = [str(uuid.uuid4()) for _ in range(8)]
    with pytest.raises(StoreUnavailable, match="every item"):
        apply_or_park(RefusingProjection(set(items)), batch(items), parked_items=set())


def test_an_outage_during_the_search_is_an_outage() -> None:
    items = [str(uuid.uuid4()) for _ in range(4)]
    records = batch(items)

    class GoesDown(RefusingProjection):
        def apply(self, records: Sequence[CommandRecord]) -> BatchPlan:
            if self.calls >= 1:
                self.down = True
            return super().apply(records)

    with pytest.raises(StoreUnavailable):
        apply_or_park(GoesDown({items[0]}), records, parked_items=set())
