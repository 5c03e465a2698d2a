"""Every cell of the status-transition table and every rejection code."""

from __future__ import annotations

from dataclasses import replace
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.commands import Priority, Status
from domain.rules import (
    ALLOWED_TRANSITIONS,
    INLINE_EXCEPTIONS,
    ActionItem,
    Applied,
    Code,
    LogPosition,
    Rejected,
    decide,
    exception_entry,
    with_exception,
    with_exception_moved,
)
from tests.unit.builders import ITEM, UpdateFields, create, update

OTHER_ITEM = "22222222-2222-4222-8222-222222222222"

ALLOWED = {
    (Status.OPEN, Status.IN_PROGRESS),
    (Status.OPEN, Status.DONE),
    (Status.OPEN, Status.CANCELLED),
    (Status.IN_PROGRESS, Status.OPEN),
    (Status.IN_PROGRESS, Status.DONE),
    (Status.IN_PROGRESS, Status.CANCELLED),
    (Status.DONE, Status.OPEN),
    (Status.CANCELLED, Status.OPEN),
}


def created(
    title: str = "t",
    *,
    key: str | None = None,
    command_id: str | None = None,
    **fields: Any,
) -> ActionItem:
    decision = decide(None, create(title=title, key=key, command_id=command_id, **fields))
    assert isinstance(decision, Applied)
    return decision.state


def test_table_matches_the_contract() -> None:
    assert {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(("current", "target"), list(product(Status, Status)))
def test_every_transition_cell(current: Status, target: Status) -> None:
    state = replace(created(), status=current)
    decision = decide(state, update(status=target))
    if current == target or (current, target) in ALLOWED:
        assert isinstance(decision, Applied)
        assert decision.state.status == target
        assert decision.state.version == 2
    else:
        assert decision == Rejected(
            Code.INVALID_TRANSITION, f"status cannot change from {current} to {target}"
        )


def test_create_sets_version_1_and_timestamps_from_the_command() -> None:
    state = created(
        title="x", assignee="a", priority=Priority.URGENT, dueDate="2026-01-02", tags=("p", "q")
    )
    assert state.version == 1
    assert state.status == Status.OPEN
    assert state.created_at == state.updated_at == "2026-11-25T12:00:00.000Z"
    assert state.tags == ("p", "q")
    assert state.exceptions == ()


def test_update_applies_merge_patch_and_bumps_version() -> None:
    state = created(description="d", assignee="a", dueDate="2026-01-02", tags=("x",))
    decision = decide(
        state,
        update(
            at=5,
            title="new",
            description=None,
            assignee=None,
            dueDate=None,
            tags=[],
            priority="low",
        ),
    )
    assert isinstance(decision, Applied)
    new = decision.state
    assert (new.title, new.description, new.assignee, new.due_date, new.tags, new.priority) == (
        "new",
        None,
        None,
        None,
        (),
        Priority.LOW,
    )
    assert new.version == 2
    assert new.updated_at == "2026-11-25T12:00:05.000Z"
    assert new.created_at == state.created_at


def test_fields_not_in_the_patch_are_untouched() -> None:
    state = created(description="keep", assignee="keep")
    decision = decide(state, update(title="changed"))
    assert isinstance(decision, Applied)
    assert decision.state.description == "keep"
    assert decision.state.assignee == "keep"


def test_create_for_an_existing_id_is_already_exists() -> None:
    assert decide(created(), create()) == Rejected(
        Code.ALREADY_EXISTS, f"ActionItem {ITEM} already exists"
    )


def test_update_of_unknown_item_is_not_found() -> None:
    assert decide(None, update(title="x")) == Rejected(
        Code.NOT_FOUND, f"ActionItem {ITEM} does not exist"
    )


def test_if_match_version() -> None:
    state = created()
    assert isinstance(decide(state, update(expected=1, title="x")), Applied)
    assert decide(state, update(expected=2, title="x")) == Rejected(
        Code.VERSION_CONFLICT, "If-Match expected version 2, item is at 1"
    )


def test_idempotency_key_reused_with_another_payload() -> None:
    """``key_owner``: the applied command that first used the key (the planner finds it)."""
    state = created(key="k", command_id="c-1")
    rejected = decide(state, update(key="k", command_id="c-2", title="x"), "c-1")
    assert isinstance(rejected, Rejected)
    assert rejected.code == Code.IDEMPOTENCY_KEY_REUSED
    # the same command (same commandId) with the same key is not a reuse
    assert isinstance(decide(state, update(key="k", command_id="c-1", title="x"), "c-1"), Applied)
    # and a second create with the reused key is a reuse, not merely ALREADY_EXISTS
    again = decide(state, create(key="k", command_id="c-3", title="other"), "c-1")
    assert isinstance(again, Rejected) and again.code == Code.IDEMPOTENCY_KEY_REUSED
    # whatever item it is for, even one that does not exist
    elsewhere = decide(None, update(OTHER_ITEM, key="k", command_id="c-4", title="y"), "c-1")
    assert isinstance(elsewhere, Rejected) and elsewhere.code == Code.IDEMPOTENCY_KEY_REUSED
    # a command without a key is never a reuse
    assert isinstance(decide(state, update(command_id="c-5", title="z"), "c-1"), Applied)


def test_the_item_keeps_the_latest_entries_inline_and_counts_them_all() -> None:
    state = created()
    commands = [update(expected=99, title=f"x{i}") for i in range(INLINE_EXCEPTIONS + 5)]
    for offset, command in enumerate(commands, start=1):
        decision = decide(state, command)
        assert isinstance(decision, Rejected)
        state = with_exception(state, exception_entry(command, LogPosition(0, offset), decision))
    assert state.exception_count == INLINE_EXCEPTIONS + 5
    assert [e.command_id for e in state.exceptions] == [
        c.command_id for c in commands[-INLINE_EXCEPTIONS:]
    ]
    assert state.version == 1


def test_rejection_appends_one_exception_and_changes_nothing_else() -> None:
    state = created()
    command = update(expected=7, title="x")
    decision = decide(state, command)
    assert isinstance(decision, Rejected)
    after = with_exception(state, exception_entry(command, LogPosition(2, 41), decision))
    assert replace(after, exceptions=(), exception_count=0) == state
    (entry,) = after.exceptions
    assert (entry.command_id, entry.code, entry.partition, entry.offset) == (
        command.command_id,
        Code.VERSION_CONFLICT,
        2,
        41,
    )
    assert entry.occurred_at == "2026-11-25T12:00:01.000Z"


@settings(max_examples=300, deadline=None)
@given(
    current=st.sampled_from(list(Status)),
    version=st.integers(1, 5),
    target=st.one_of(st.none(), st.sampled_from(list(Status))),
    expected=st.one_of(st.none(), st.integers(1, 5)),
    title=st.one_of(st.none(), st.text(min_size=1, max_size=5)),
)
def test_a_decision_either_bumps_the_version_by_one_or_changes_nothing(
    current: Status, version: int, target: Status | None, expected: int | None, title: str | None
) -> None:
    state = replace(created(), status=current, version=version)
    changes: UpdateFields = {}
    if target is not None:
        changes["status"] = target
    if title is not None:
        changes["title"] = title
    if not changes:
        changes["assignee"] = None
    command = update(expected=expected, **changes)
    decision = decide(state, command)
    if isinstance(decision, Applied):
        assert decision.state.version == version + 1
        assert decision.state.updated_at == "2026-11-25T12:00:01.000Z"
        assert decision.state.created_at == state.created_at
        assert decision.state.exceptions == state.exceptions
    else:
        assert decision.code in (Code.VERSION_CONFLICT, Code.INVALID_TRANSITION)
        after = with_exception(state, exception_entry(command, LogPosition(0, 9), decision))
        assert replace(after, exceptions=state.exceptions, exception_count=0) == state
        assert len(after.exceptions) == len(state.exceptions) + 1
        assert after.exception_count == state.exception_count + 1


def test_a_re_sent_copy_moves_only_its_own_exception_entry() -> None:
    state = created()
    stale, illegal = update(expected=9, title="x"), update(status="open", expected=7)
    for offset, command in ((3, stale), (4, illegal)):
        decision = decide(state, command)
        assert isinstance(decision, Rejected)
        state = with_exception(state, exception_entry(command, LogPosition(1, offset), decision))
    moved = with_exception_moved(state, stale.command_id, LogPosition(1, 8))
    assert [(e.command_id, e.offset) for e in moved.exceptions] == [
        (stale.command_id, 8),
        (illegal.command_id, 4),
    ]
    assert replace(moved, exceptions=()) == replace(state, exceptions=())
