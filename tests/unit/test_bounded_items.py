"""Issue 16: bounded item documents, the Exceptions history beside them, keys claimed per partition
and the command API's key verdict (schema v4 keyOwner) across partitions.

Pure: the planner and the document mapping, no store (the store-backed checks are in
tests/integration/test_projector_history.py).
"""

from __future__ import annotations

import json
from dataclasses import replace

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


# -- the command API's verdict (schema v4 keyOwner) -----------------------------------


def owned_by(command: CommandEnvelope, owner: str) -> CommandEnvelope:
    """``command`` as the command API writes it when its key registry named another owner."""
    return replace(command, key_owner=owner)


def decided_in_cuts(log: list[CommandRecord], cut: int) -> dict[str, tuple[str, str | None]]:
    """Every command's (status, exception message), planning the log in batches of ``cut``,
    each against what the previous ones stored (claims included)."""
    stored: dict[str, StoredItem] = {}
    claims: dict[str, KeyClaim] = {}
    out: dict[str, tuple[str, str | None]] = {}
    for i in range(0, len(log), cut):
        plan = plan_batch(log[i : i + cut], stored, {}, claims)
        stored.update({w.stored.state.id: w.stored for w in plan.item_writes})
        claims.update({c.id: c for c in plan.key_claims})
        for o in plan.outcomes:
            out[o.command_id] = (o.status, o.exception.message if o.exception else None)
    return out


def test_a_verdict_rejects_a_reuse_on_an_item_of_another_partition() -> None:
    """The owner is on partition 0, the reuse on partition 1: no claim of partition 1 knows
    the key, the verdict the command carries decides. Same entry shape as the partition rule."""
    owner = update(title="a", key="k", command_id="c-1", at=2)
    reuse = owned_by(update(OTHER, title="b", key="k", command_id="c-2", at=3), "c-1")
    log = [*on_log(create(), owner), *on_log(create(OTHER, at=1), reuse, partition=1)]
    plan = plan_batch(log, {}, {})
    by_id = {o.command_id: o for o in plan.outcomes}
    assert by_id["c-1"].status == "applied"
    refused = by_id["c-2"]
    assert refused.status == "rejected" and refused.exception is not None
    assert refused.exception.code == Code.IDEMPOTENCY_KEY_REUSED
    assert refused.exception.message == (
        "Idempotency-Key was already used by command c-1 with a different payload"
    )
    assert (refused.exception.partition, refused.exception.offset) == (1, 1)
    # on the item's Exceptions node and in its history, nothing else changed
    item = next(w.stored for w in plan.item_writes if w.stored.state.id == OTHER)
    assert [e.command_id for e in item.state.exceptions] == ["c-2"]
    assert item.state.exception_count == 1 and item.state.version == 1
    assert [(h.item_id, h.seq, h.entry) for h in plan.history] == [(OTHER, 1, refused.exception)]
    # the rejected reuse claims nothing; the owner claims its own partition as before
    assert plan.key_claims == [KeyClaim("k", "c-1", LogPosition(0, 1))]
    expected = fold_commands(log)
    assert expected.items[OTHER] == item
    assert expected.statuses["c-2"]["exception"]["message"] == refused.exception.message


def test_a_verdict_decides_whatever_the_partition_claims_say_and_in_any_replay() -> None:
    """Even before the owner on the log (another partition may be read later), and even where
    the partition's claim would let it through: the verdict is in the record, so every batch
    cut, every replay and the reference fold decide it alike."""
    reuse = owned_by(update(title="b", key="k", command_id="c-2", at=1), "c-1")
    owner = update(OTHER, title="a", key="k", command_id="c-1", at=2)
    # on partition 0, an applied use of the key without a verdict (accepted fail-open) claims
    # it first; the command after it carries the verdict naming c-1, and c-1 wins the message
    fail_open = update(title="x", key="k", command_id="c-0", at=1)
    log = [
        *on_log(create(), fail_open, reuse),
        *on_log(create(OTHER), owner, partition=1),
    ]
    decided = {cut: decided_in_cuts(log, cut) for cut in (1, 2, 5)}
    assert decided[1] == decided[2] == decided[5]
    assert decided[1]["c-0"] == ("applied", None)
    assert decided[1]["c-1"] == ("applied", None)
    assert decided[1]["c-2"] == (
        "rejected",
        "Idempotency-Key was already used by command c-1 with a different payload",
    )
    folded = fold_commands(log).statuses
    as_folded = {c: (s["status"], (s["exception"] or {}).get("message")) for c, s in folded.items()}
    assert as_folded == decided[1]


def test_a_verdict_naming_the_command_itself_leaves_the_partition_rule() -> None:
    """A command is never its own reuse; without another owner the old rule decides, exactly
    as for records written before schema v4 (no field)."""
    first = update(title="a", key="k", command_id="c-1", at=2)
    itself = owned_by(update(OTHER, title="b", key="k", command_id="c-2", at=3), "c-2")
    plan = plan_batch(on_log(create(), create(OTHER, at=1), first, itself), {}, {})
    refused = next(o for o in plan.outcomes if o.command_id == "c-2")
    assert refused.exception is not None
    assert refused.exception.message == (
        "Idempotency-Key was already used by command c-1 with a different payload"
    )
    alone = plan_batch(on_log(create(OTHER), itself, partition=1), {}, {})
    assert [o.status for o in alone.outcomes] == ["applied", "applied"]
