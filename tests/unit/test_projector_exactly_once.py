"""Exactly-once effect of the batch planner under any schedule of batches, crashes and replays.

The store is modelled by its write order (what ``ProjectionStore`` does, no
transactions): (1) command statuses, Exceptions history records and
Idempotency-Key claims (inserts that keep what is there), (2) items: a new one
inserted, a stored one updated with a ``$set`` of the changed fields under a
compare-and-set on its last offset (the model keeps documents, so a wrong
``$set`` shows), (3) status and history moves to a re-sent legacy copy's position (records
written before issue 20, key = commandId; each record of a stream is drawn
as legacy or not, so logs mixing both schemes are covered). A crash can stop a
batch after any of these steps; nothing is committed then, so the consumer
delivers the batch again, possibly cut differently, and sometimes the log is
replayed from further back (a lost commit, a rebalance, a new consumer group).
Whatever happens, the result must be the pure domain folded once over the log.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from domain.commands import CommandEnvelope, Status
from domain.planning import CommandRecord, StoredItem, plan_batch
from domain.rules import LogPosition
from projector.documents import (
    claim_doc,
    claim_from,
    history_doc,
    item_changes,
    item_doc,
    item_from,
    status_doc,
)
from schemas.partitioning import partition_for
from tests.support.projector_model import fold_commands
from tests.unit.builders import T0, UpdateFields, create, update

ITEMS = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
]
PARTITIONS = 2


class ModelStore:
    """The store's three write steps on dicts; ``crash_after`` stops a batch part-way."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}

    @property
    def items(self) -> dict[str, StoredItem]:
        return {item_id: item_from(doc) for item_id, doc in self.docs.items()}

    def key_owners(self) -> dict[tuple[str, int], str]:
        return {
            (c.key_hash, c.position.partition): c.command_id
            for c in map(claim_from, self.claims.values())
        }

    def apply(self, records: list[CommandRecord], crash_after: int | None) -> bool:
        stored = {
            r.command.action_item_id: item_from(self.docs[r.command.action_item_id])
            for r in records
            if r.command.action_item_id in self.docs
        }
        claims = {
            c.id: c
            for c in map(claim_from, self.claims.values())
            if any(r.command.idempotency_key_hash == c.key_hash for r in records)
        }
        known = {
            r.command.command_id: LogPosition(
                self.statuses[r.command.command_id]["partition"],
                self.statuses[r.command.command_id]["offset"],
            )
            for r in records
            if r.command.command_id in self.statuses
        }
        plan = plan_batch(records, stored, known, claims)
        for outcome in plan.outcomes:
            self.statuses[outcome.command_id] = status_doc(outcome)
        for entry in plan.history:
            self.history.setdefault(entry.entry.command_id, history_doc(entry))
        for claim in plan.key_claims:
            self.claims.setdefault(claim.id, claim_doc(claim))
        if crash_after == 1:
            return False
        for write in plan.item_writes:
            item_id = write.stored.state.id
            current = self.docs.get(item_id)
            assert (current["_log"]["lastOffset"] if current else None) == (
                write.expected_last_offset
            )
            if current is None:
                self.docs[item_id] = item_doc(write.stored)
            else:
                assert write.before is not None and write.before == item_from(current)
                current.update(item_changes(write.before, write.stored))
        if crash_after == 2:
            return False
        for move in plan.moves:
            doc = self.statuses.get(move.command_id)
            if doc is not None and doc["offset"] < move.position.offset:
                doc.update(partition=move.position.partition, offset=move.position.offset)
                if doc["exception"] is not None:
                    doc["exception"] = {
                        **doc["exception"],
                        "partition": move.position.partition,
                        "offset": move.position.offset,
                    }
            record = self.history.get(move.command_id)
            if record is not None and record["offset"] < move.position.offset:
                record.update(partition=move.position.partition, offset=move.position.offset)
        return crash_after != 3


Logged = tuple[CommandEnvelope, bool]  # a command and whether its record has a legacy key


def command_streams() -> st.SearchStrategy[list[Logged]]:
    """Creates, updates (some illegal, some with a stale If-Match, some carrying the key
    registry's verdict naming the key's first use), unknown items, copies; each with a
    legacy (key = commandId) or a per-record key."""
    step = st.one_of(
        st.tuples(st.just("create"), st.sampled_from(ITEMS), st.booleans()),
        st.tuples(
            st.just("update"),
            st.sampled_from(ITEMS),
            st.sampled_from([None, *Status]),
            st.sampled_from([None, None, 1, 2, 3]),
        ),
        st.tuples(st.just("unknown")),
        st.tuples(st.just("copy"), st.integers(0, 50)),
    )

    def build(steps: list[tuple[tuple[Any, ...], bool]]) -> list[Logged]:
        out: list[Logged] = []
        for at, (s, legacy) in enumerate(steps):
            if s[0] == "create":
                out.append((create(s[1], at=at, key="k" if s[2] else None), legacy))
            elif s[0] == "update":
                changes: UpdateFields = {"title": f"t{at}"}
                if s[2] is not None:
                    changes["status"] = s[2]
                key = "k" if at % 4 else None
                command = update(s[1], at=at, expected=s[3], key=key, **changes)
                if key is not None and at % 3 == 0:  # the command API's verdict (schema v4)
                    first_use = next((c for c, _ in out if c.idempotency_key_hash == key), None)
                    if first_use is not None:
                        command = replace(command, key_owner=first_use.command_id)
                out.append((command, legacy))
            elif s[0] == "unknown":
                out.append(
                    (update("44444444-4444-4444-8444-444444444444", at=at, title="x"), legacy)
                )
            elif out:
                earlier = out[s[1] % len(out)][0]
                out.append((replace(earlier, accepted_at=T0.replace(second=at % 60)), legacy))
        return out

    return st.lists(st.tuples(step, st.booleans()), min_size=1, max_size=30).map(build)


def log_of(commands: list[Logged]) -> list[CommandRecord]:
    """The commands as they land on the log: per-item partitions, offsets in order."""
    next_offset = [0] * PARTITIONS
    out = []
    for command, legacy in commands:
        p = partition_for(command.action_item_id, PARTITIONS)
        out.append(CommandRecord(LogPosition(p, next_offset[p]), command, legacy_key=legacy))
        next_offset[p] += 1
    return out


def describe(record: CommandRecord) -> str:
    c = record.command
    return (
        f"{record.position.partition}/{record.position.offset} {c.command_id[:8]} "
        f"{c.action_item_id[:2]} {c.kind} {c.payload} expected={c.expected_version}"
    )


@settings(max_examples=300, deadline=None)
@given(commands=command_streams(), data=st.data())
def test_any_schedule_of_batches_crashes_and_replays_gives_the_fold(
    commands: list[Logged], data: st.DataObject
) -> None:
    log = log_of(commands)
    note("\n".join(describe(r) for r in log))
    store = ModelStore()
    committed = 0
    for _ in range(60):
        if committed >= len(log):
            break
        if data.draw(st.integers(0, 9)) == 0:
            committed = data.draw(st.integers(0, committed))  # replay from further back
        end = data.draw(st.integers(committed + 1, len(log)))
        crash = data.draw(st.sampled_from([None, None, 1, 2, 3]))
        note(f"deliver [{committed}:{end}] crash after step {crash}")
        if store.apply(log[committed:end], crash):
            committed = end
    store.apply(log[committed:], None)
    expected = fold_commands(log)
    assert store.items == expected.items
    assert store.statuses == expected.statuses
    assert store.history == expected.history
    assert store.key_owners() == expected.key_owners
    for item_id, item in store.items.items():
        entries = expected.history_of(item_id)
        assert item.state.exception_count == len(entries)
        assert [h["seq"] for h in entries] == list(range(1, len(entries) + 1))


@settings(max_examples=100, deadline=None)
@given(commands=command_streams())
def test_delivered_once_or_five_times_gives_the_same_model(commands: list[Logged]) -> None:
    log = log_of(commands)
    once, five = ModelStore(), ModelStore()
    once.apply(log, None)
    for _ in range(5):
        for i in range(0, len(log), 3):
            five.apply(log[i : i + 3], None)
    assert once.items == five.items
    assert once.statuses == five.statuses
    assert once.history == five.history
    assert once.claims == five.claims
