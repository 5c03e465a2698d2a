"""Issue 16: bounded item documents, the Exceptions history beside them, keys claimed per partition.

Pure: the planner and the document mapping, no store (the store-backed checks are in
tests/integration/test_projector_history.py).
"""

from __future__ import annotations

import json

from domain.commands import CommandEnvelope
from domain.planning import CommandRecord, KeyClaim, StoredItem, plan_batch
from domain.rules import INLINE_EXCEPTIONS, Code, LogPosition
from projector.documents import item_changes, item_doc
from tests.support.projector_model import fold_commands
from tests.unit.builders import ITEM, create, update

OTHER = "22222222-2222-4222-8222-222222222222"


def on_log(*commands: CommandEnvelope, partition: int = 0, start: int = 0) -> list[CommandRecord]:
    return [CommandRecord(LogPosition(partition, start + i), c) for i, c in enumerate(commands)]


def test_more_rejections_than_the_inline_limit_keep_the_last_ones_and_count_all() -> None:
    stale = [update(expected=99, title=f"s{i}", at=i + 1) for i in range(INLINE_EXCEPTIONS + 7)]
    log = on_log(create(), *stale)
    # in batches of 4, each planned against what the previous ones stored
    stored: dict[str, StoredItem] = {}
    history = []
    for i in range(0, len(log), 4):
        plan = plan_batch(log[i : i + 4], stored, {})
        history += plan.history
        stored.update({w.stored.state.id: w.stored for w in plan.item_writes})
    item = stored[ITEM].state
    assert item.exception_count == INLINE_EXCEPTIONS + 7
    assert [e.command_id for e in item.exceptions] == [
        c.command_id for c in stale[-INLINE_EXCEPTIONS:]
    ]
    assert [h.seq for h in history] == list(range(1, INLINE_EXCEPTIONS + 8))
    assert [h.entry.command_id for h in history] == [c.command_id for c in stale]
    assert all(h.entry.code == Code.VERSION_CONFLICT for h in history)
    assert item.version == 1
    assert stored[ITEM] == fold_commands(log).items[ITEM]


def test_an_item_write_costs_the_change_not_the_history() -> None:
    """The document and each write's $set stay under a fixed size however many commands."""
    stored: dict[str, StoredItem] = {}
    plan = plan_batch(on_log(create(title="t" * 200)), stored, {})
    stored = {w.stored.state.id: w.stored for w in plan.item_writes}
    biggest_doc = biggest_set = 0
    for n in range(1, 2001):
        command = (
            update(expected=10**6, title="x" * 200, at=n)
            if n % 2
            else update(title=f"y{n}" + "z" * 190, at=n)
        )
        plan = plan_batch(on_log(command, start=n), stored, {})
        (write,) = plan.item_writes
        assert write.before is not None
        biggest_set = max(biggest_set, len(json.dumps(item_changes(write.before, write.stored))))
        biggest_doc = max(biggest_doc, len(json.dumps(item_doc(write.stored))))
        stored = {ITEM: write.stored}
    assert stored[ITEM].state.exception_count == 1000
    assert biggest_doc < 16_000, biggest_doc
    assert biggest_set < 16_000, biggest_set


def test_a_key_reused_on_another_item_of_the_partition_is_rejected() -> None:
    first = update(title="a", key="k", command_id="c-1", at=2)
    elsewhere = update(OTHER, title="b", key="k", command_id="c-2", at=3)
    log = on_log(create(), create(OTHER, at=1), first, elsewhere)
    plan = plan_batch(log, {}, {})
    by_id = {o.command_id: o for o in plan.outcomes}
    assert by_id["c-1"].status == "applied"
    assert by_id["c-2"].exception is not None
    assert by_id["c-2"].exception.code == Code.IDEMPOTENCY_KEY_REUSED
    assert plan.key_claims == [KeyClaim("k", "c-1", LogPosition(0, 2))]
    # decided in a later batch, against the stored claim, the same
    stored = {w.stored.state.id: w.stored for w in plan_batch(log[:3], {}, {}).item_writes}
    later = plan_batch(log[3:], stored, {}, {plan.key_claims[0].id: plan.key_claims[0]})
    (outcome,) = later.outcomes
    assert outcome.exception is not None
    assert outcome.exception.code == Code.IDEMPOTENCY_KEY_REUSED


def test_a_claim_from_later_in_the_log_does_not_decide_an_earlier_command() -> None:
    """A replay from further back meets the claim its crashed first attempt stored: a command
    before the claim is decided as the first time (here: a version conflict, not a reuse)."""
    rejected = update(expected=7, title="a", key="k", command_id="c-1", at=1)
    applied = update(title="b", key="k", command_id="c-2", at=2)
    log = on_log(create(), rejected, applied)
    claim = KeyClaim("k", "c-2", LogPosition(0, 2))
    plan = plan_batch(log, {}, {}, {claim.id: claim})
    by_id = {o.command_id: o for o in plan.outcomes}
    assert by_id["c-1"].exception is not None
    assert by_id["c-1"].exception.code == Code.VERSION_CONFLICT
    assert by_id["c-2"].status == "applied"
    assert plan.key_claims == []  # already stored


def test_claims_are_per_partition() -> None:
    """No order exists between partitions, so a key's first use is decided per partition:
    the same in the live model and in every replay."""
    a = update(title="a", key="k", command_id="c-1", at=2)
    b = update(OTHER, title="b", key="k", command_id="c-2", at=3)
    log = [*on_log(create(), a), *on_log(create(OTHER, at=1), b, partition=1)]
    plan = plan_batch(log, {}, {})
    assert {o.command_id: o.status for o in plan.outcomes if o.command_id in ("c-1", "c-2")} == {
        "c-1": "applied",
        "c-2": "applied",
    }
    assert sorted(c.id for c in plan.key_claims) == ["k:0", "k:1"]
