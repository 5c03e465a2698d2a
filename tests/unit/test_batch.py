"""The batch planner: exactly-once effect under redelivery, duplicates and chained commands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from domain.commands import CommandEnvelope
from domain.planning import CommandOutcome, CommandRecord, StoredItem, plan_batch, settled_outcomes
from domain.rules import Code, LogPosition
from tests.unit.builders import ITEM, create, update

OTHER = "22222222-2222-4222-8222-222222222222"


def records(
    *commands: CommandEnvelope, partition: int = 0, start: int = 0, legacy: bool = False
) -> list[CommandRecord]:
    """Records as on the log; ``legacy``: written before issue 20 (key = commandId)."""
    return [
        CommandRecord(LogPosition(partition, start + i), c, legacy_key=legacy)
        for i, c in enumerate(commands)
    ]


@dataclass
class Replayed:
    """What the store holds after a replay: the items, the outcomes, each command's position."""

    stored: dict[str, StoredItem]
    outcomes: list[CommandOutcome]
    known: dict[str, LogPosition]


def replay(
    batches: Iterable[list[CommandRecord]],
    stored: Mapping[str, StoredItem] | None = None,
    known: Mapping[str, LogPosition] | None = None,
) -> Replayed:
    """Feed batches one after another, carrying the written state like the store would."""
    result = Replayed(dict(stored or {}), [], dict(known or {}))
    for batch in batches:
        plan = plan_batch(
            batch,
            result.stored,
            {
                r.command.command_id: result.known[r.command.command_id]
                for r in batch
                if r.command.command_id in result.known
            },
        )
        for write in plan.item_writes:
            result.stored[write.stored.state.id] = write.stored
        for o in plan.outcomes:
            result.known[o.command_id] = o.position
        for m in plan.moves:
            result.known[m.command_id] = m.position
        result.outcomes.extend(plan.outcomes)
    return result


def apply_all(
    batches: Iterable[list[CommandRecord]], stored: Mapping[str, StoredItem] | None = None
) -> tuple[dict[str, StoredItem], list[CommandOutcome]]:
    replayed = replay(batches, stored)
    return replayed.stored, replayed.outcomes


def test_commands_chain_within_a_batch() -> None:
    batch = records(
        create(), update(title="a"), update(status="done"), update(status="in_progress")
    )
    stored, outcomes = apply_all([batch])
    item = stored[ITEM]
    assert item.state.version == 3
    assert item.last_offset == 3
    assert [o.status for o in outcomes] == ["applied", "applied", "applied", "rejected"]
    assert item.state.exceptions[0].code == Code.INVALID_TRANSITION


def test_same_read_model_whether_delivered_once_or_five_times() -> None:
    batch = records(create(), update(title="a"), update(expected=9, title="b"), create(OTHER))
    once, once_outcomes = apply_all([batch])
    five, five_outcomes = apply_all([batch] * 5)
    assert once == five
    assert once_outcomes == five_outcomes  # redeliveries produce no second outcome


def test_redelivery_of_a_prefix_after_partial_progress() -> None:
    batch = records(create(), update(title="a"), update(title="b"))
    stored, _ = apply_all([batch[:2]])
    stored, outcomes = apply_all([batch], stored=stored)
    assert stored[ITEM].state.title == "b"
    assert stored[ITEM].state.version == 3
    assert [o.position.offset for o in outcomes] == [2]


def test_a_resent_copy_of_a_command_is_skipped() -> None:
    first = create(command_id="dup")
    batch = records(first, update(title="x"), first)
    plan = plan_batch(batch, {}, {})
    assert [r.position.offset for r in plan.duplicates] == [2]
    assert len(plan.outcomes) == 2


def test_update_of_unknown_item_is_recorded_on_the_status_only() -> None:
    plan = plan_batch(records(update(title="x")), {}, {})
    (outcome,) = plan.outcomes
    assert outcome.status == "rejected"
    assert outcome.exception is not None and outcome.exception.code == Code.NOT_FOUND
    assert plan.item_writes == []


def test_next_offsets_cover_every_partition() -> None:
    batch = records(create(), partition=1, start=10) + records(create(OTHER), partition=2, start=5)
    assert plan_batch(batch, {}, {}).next_offsets == {1: 11, 2: 6}


def test_a_later_copy_moves_nothing_the_first_copy_keeps_its_place() -> None:
    """Every record has a key of its own: compaction keeps both copies, so the replay meets
    the first copy first, before and after the cleaner ran; the later copy changes nothing."""
    rejected = update(expected=5, title="x", command_id="dup")
    live_log = records(create(), rejected, update(title="between"), rejected)
    live = replay([live_log])
    assert live.known["dup"] == LogPosition(0, 1)
    assert live.stored[ITEM].last_offset == 2  # the copy at 3 did not touch the item
    (entry,) = live.stored[ITEM].state.exceptions
    assert (entry.command_id, entry.offset) == ("dup", 1)
    plan = plan_batch(live_log, {}, {})
    assert plan.moves == []
    assert [r.position.offset for r in plan.duplicates] == [3]
    # redelivered in any cut, also the copy alone after everything was stored
    assert replay([live_log[:2], live_log[1:], live_log[3:]]) == live
    alone = plan_batch(live_log[3:], live.stored, {"dup": LogPosition(0, 1)})
    assert alone.moves == [] and alone.item_writes == [] and alone.outcomes == []


def test_a_late_first_copy_keeps_its_decision_against_a_command_accepted_in_between() -> None:
    """The PATCH's first attempt is on the log before another writer's PATCH; its retry lands
    after it. The first copy decides (applied), the other PATCH meets version 2 (conflict)."""
    patch = update(expected=1, title="mine", command_id="p")
    other = update(expected=1, title="theirs", command_id="q")
    log = records(create(), patch, other, patch)
    result = replay([log])
    by_id = {o.command_id: o for o in result.outcomes}
    assert by_id["p"].status == "applied" and by_id["p"].position == LogPosition(0, 1)
    assert by_id["q"].exception is not None
    assert by_id["q"].exception.code == Code.VERSION_CONFLICT
    assert result.stored[ITEM].state.title == "mine"
    assert result.stored[ITEM].state.version == 2
    assert result.known["p"] == LogPosition(0, 1)


def test_a_resent_legacy_copy_moves_the_recorded_position_to_the_copy() -> None:
    """Records written before issue 20 (key = commandId): compaction keeps the latest copy;
    recording its position, as the live model did, makes a replay identical."""
    rejected = update(expected=5, title="x", command_id="dup")
    live_log = records(create(), rejected, rejected, legacy=True)  # the copy is at offset 2
    live = replay([live_log])
    compacted = [live_log[0], live_log[2]]  # what the cleaner leaves
    rebuilt = replay([compacted])
    assert live.stored == rebuilt.stored
    assert live.known == rebuilt.known
    assert live.stored[ITEM].state.exceptions[0].offset == 2
    plan = plan_batch(live_log, {}, {})
    # the copy is in the same batch: the status is written at the first copy's position
    # and moved after the items (a crash in between must not hide the first copy's effect)
    (first,) = [o for o in plan.outcomes if o.command_id == "dup"]
    assert first.position == LogPosition(0, 1)
    assert [(m.command_id, m.position.offset) for m in plan.moves] == [("dup", 2)]
    (moved,) = [o for o in settled_outcomes(plan) if o.command_id == "dup"]
    assert moved.position == LogPosition(0, 2)
    assert moved.exception is not None and moved.exception.offset == 2


def test_a_legacy_copy_seen_in_a_later_batch_moves_status_and_item() -> None:
    first = create(command_id="c1")
    stored, _ = apply_all([records(first, legacy=True)])
    plan = plan_batch(records(first, start=4, legacy=True), stored, {"c1": LogPosition(0, 0)})
    assert [(m.command_id, m.position.offset) for m in plan.moves] == [("c1", 4)]
    (write,) = plan.item_writes
    assert write.stored.last_offset == 4
    assert write.stored.state.version == 1  # no second effect


def test_a_new_key_copy_seen_in_a_later_batch_moves_nothing() -> None:
    first = create(command_id="c1")
    stored, _ = apply_all([records(first)])
    plan = plan_batch(records(first, start=4), stored, {"c1": LogPosition(0, 0)})
    assert plan.moves == [] and plan.item_writes == [] and plan.outcomes == []
    assert [r.position.offset for r in plan.duplicates] == [4]
    assert plan.next_offsets == {0: 5}


def test_a_log_mixing_both_schemes_replays_as_it_was_built() -> None:
    """A legacy first copy and a retry written after the change (new key): the new-key copy
    moves nothing; a legacy copy after it still moves (compaction keeps only that one)."""
    cmd = update(title="x", command_id="m")
    log = [
        *records(create(), legacy=True),
        *records(cmd, start=1, legacy=True),
        *records(cmd, start=2),  # the retry, written by the new command API
        *records(cmd, start=3, legacy=True),  # an older API instance retried too
    ]
    result = replay([log])
    assert result.known["m"] == LogPosition(0, 3)
    assert result.stored[ITEM].last_offset == 3
    assert result.stored[ITEM].state.version == 2
    assert [(m.command_id, m.position.offset) for m in plan_batch(log, {}, {}).moves] == [("m", 3)]
