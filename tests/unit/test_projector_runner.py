"""The loop's decisions about a batch, with stand-ins for Kafka and the store.

The stand-ins only record calls; the same paths run against the real broker
and store in tests/e2e/test_projector_poison.py (held partition),
test_projector_dead_letters.py (DLQ) and test_projector_outage.py (outage).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import pytest
from confluent_kafka import Message, TopicPartition
from pymongo import monitoring

from domain.planning import BatchPlan, CommandRecord, plan_batch
from domain.rules import LogPosition
from projector.dead_letters import DeadLetterUnavailable
from projector.health import Health, InFlightCommands
from projector.holds import PartitionHold
from projector.isolation import merge_plans
from projector.loop import ProjectorLoop
from projector.ports import RebalanceCallback
from projector.settings import ProjectorSettings
from schemas.codec import CommandCodec
from servicekit.store_errors import StoreRejected, StoreUnavailable
from tests.unit.builders import create, update

TOPIC = "t.commands"
A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"


class Consumer:
    def __init__(self) -> None:
        self.paused: list[int] = []
        self.resumed: list[int] = []
        self.commits: list[dict[int, int]] = []

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = [tp.partition for tp in tps]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused += [tp.partition for tp in tps]

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed += [tp.partition for tp in tps]

    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition]:
        self.commits.append({tp.partition: tp.offset for tp in offsets})
        return offsets

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return (0, 100)

    # the loop's run() uses these; the tests here drive _process directly
    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        raise AssertionError("not used by these tests")

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        raise AssertionError("not used by these tests")

    def close(self) -> None:
        pass


class Store:
    """Applies by planning alone; refuses any batch holding a poisoned commandId."""

    def __init__(self, poisoned: set[str], outages: int = 0, dead_pings: int = 0) -> None:
        self.poisoned = poisoned
        self.outages = outages
        self.dead_pings = dead_pings
        self.applied: list[str] = []

    def apply(self, records: Sequence[CommandRecord]) -> BatchPlan:
        if self.outages:
            self.outages -= 1
            raise StoreUnavailable("connection refused")
        if any(r.command.command_id in self.poisoned for r in records):
            raise StoreRejected("E11000 on index test_unique_title")
        self.applied += [r.command.command_id for r in records]
        return plan_batch(records, {}, {})

    def ping(self) -> None:
        if self.dead_pings:
            self.dead_pings -= 1
            if not self.dead_pings:
                self.poisoned.clear()  # the store's database is back: the "refusal" is gone
            raise StoreRejected("the store's own database is not answering")

    def ensure_indexes(self) -> None:
        pass


class DeadLetters:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[int] = []

    def send(self, messages: Sequence[tuple[Message, str]]) -> None:
        if self.failures:
            self.failures -= 1
            raise DeadLetterUnavailable("broker down")
        self.sent += [int(m.offset() or 0) for m, _ in messages]


class Gate:
    def before_batch(self) -> None:
        pass

    def leave(self) -> None:
        pass


def loop(store: Store, dead: DeadLetters | None = None) -> tuple[ProjectorLoop, Consumer]:
    consumer = Consumer()
    settings = ProjectorSettings.model_validate(
        {"commands_topic": TOPIC, "store_retry_max_seconds": 0.01, "hold_retry_max_seconds": 0.01}
    )
    projector = ProjectorLoop(
        settings,
        store,
        consumer,
        dead or DeadLetters(),
        Health(),
        threading.Event(),
        Gate(),
    )
    return projector, consumer


def record(partition: int, offset: int, command: Any) -> CommandRecord:
    return CommandRecord(LogPosition(partition, offset), command)


def message(
    partition: int, offset: int, command: Any = None, value: bytes | None = None
) -> Message:
    encoded = CommandCodec().encode(command) if command is not None else value
    return Message(topic=TOPIC, partition=partition, offset=offset, value=encoded)


def test_a_refused_record_holds_its_partition_after_applying_what_came_before() -> None:
    bad = update(A, title="refused")
    batch = [
        message(0, 10, create(A)),
        message(1, 4, create(B)),
        message(0, 11, bad),
        message(0, 12, update(A, title="after")),
        message(1, 5, update(B, title="other partition")),
    ]
    store = Store({bad.command_id})
    projector, consumer = loop(store)
    assert projector._process(batch, {})
    assert consumer.paused == [0]
    assert consumer.commits == [{0: 11, 1: 6}]  # partition 0 committed up to the refused record
    hold = projector.holds[0]
    assert (hold.offset, hold.command_id, hold.attempts) == (11, bad.command_id, 1)
    assert [int(m.offset() or 0) for m in hold.messages] == [11, 12]
    assert "partition 0 held at offset 11" in projector.health.problems()[-1]
    assert bad.command_id not in store.applied


def test_messages_of_a_held_partition_wait_behind_it_and_go_once_it_clears() -> None:
    bad = update(A, title="refused")
    store = Store({bad.command_id})
    projector, consumer = loop(store)
    projector._process([message(0, 0, create(A)), message(0, 1, bad)], {})
    fresh = projector._divert_held(
        [message(0, 2, update(A, title="later")), message(1, 0, create(B))]
    )
    assert [m.partition() for m in fresh] == [1]
    projector.holds[0].retry_at = 0
    retrying = projector._due_holds()
    store.poisoned.clear()  # the operator removed the cause
    assert projector._process([m for h in retrying.values() for m in h.messages], retrying)
    assert consumer.resumed == [0]
    assert projector.holds == {}
    assert consumer.commits[-1] == {0: 3}
    assert store.applied[-2:] == [bad.command_id, store.applied[-1]]


def test_a_retry_that_fails_again_keeps_the_hold_and_backs_off() -> None:
    bad = update(A, title="refused")
    projector, consumer = loop(Store({bad.command_id}))
    projector._process([message(0, 7, bad)], {})
    projector.holds[0].retry_at = 0
    retrying = projector._due_holds()
    projector._process([m for h in retrying.values() for m in h.messages], retrying)
    assert projector.holds[0].attempts == 2
    assert consumer.paused == [0]  # paused once, not again
    assert consumer.resumed == []
    assert consumer.commits == []  # nothing before the refused record: nothing to commit


def test_an_outage_is_retried_as_a_whole_and_never_isolated() -> None:
    store = Store(set(), outages=3)
    projector, consumer = loop(store)
    assert projector._process([message(0, 0, create(A)), message(0, 1, create(B))], {})
    assert projector.holds == {}
    assert consumer.commits == [{0: 2}]
    assert projector.health.store_ok


def test_a_refusal_when_the_store_does_not_even_answer_a_ping_is_an_outage() -> None:
    cmd = create(A)
    store = Store({cmd.command_id}, dead_pings=2)
    projector, consumer = loop(store)
    assert projector._process([message(0, 0, cmd)], {})
    assert projector.holds == {}  # retried as a whole, never held
    assert store.applied == [cmd.command_id]
    assert consumer.commits == [{0: 1}]


def test_an_outage_ends_the_loop_without_commit_when_asked_to_stop() -> None:
    store = Store(set(), outages=10**6)
    projector, consumer = loop(store)
    projector.stop.set()
    assert not projector._process([message(0, 0, create(A))], {})
    assert consumer.commits == []


def test_undecodable_records_go_to_the_dlq_before_the_commit_retried_until_taken() -> None:
    dead = DeadLetters(failures=2)
    projector, consumer = loop(Store(set()), dead)
    assert projector._process([message(0, 0, create(A)), message(0, 1, value=b"garbage")], {})
    assert dead.sent == [1]
    assert consumer.commits == [{0: 2}]
    assert projector.health.dead_letter_error is None


def test_a_dlq_that_never_takes_the_record_commits_nothing_on_stop() -> None:
    dead = DeadLetters(failures=10**6)
    projector, consumer = loop(Store(set()), dead)
    threading.Timer(0.2, projector.stop.set).start()
    assert not projector._process([message(0, 0, value=b"garbage")], {})
    assert consumer.commits == []
    assert "dead-letter topic" in " ".join(projector.health.problems())


def test_merge_plans_concatenates_and_keeps_the_highest_next_offsets() -> None:
    one = plan_batch([record(0, 3, create(A))], {}, {})
    two = plan_batch([record(0, 9, create(B)), record(1, 2, create())], {}, {})
    merged = merge_plans([one, two])
    assert len(merged.outcomes) == 3
    assert merged.next_offsets == {0: 10, 1: 3}


def test_a_store_command_that_hangs_makes_readiness_fail() -> None:
    address = ("127.0.0.1", 27017)
    started = monitoring.CommandStartedEvent({"ping": 1}, "admin", 1, address, None)
    succeeded = monitoring.CommandSucceededEvent(timedelta(0), {"ok": 1}, "ping", 1, address, None)
    health = Health(store_ok=True, kafka_ok=True, store_stall_seconds=0.0)
    watch: InFlightCommands = health.store_commands
    watch.started(started)
    assert health.problems()[0].startswith("store not answering")
    watch.succeeded(succeeded)
    assert health.problems() == []


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_hold_describes_itself_for_operators(attempts: int) -> None:
    hold = PartitionHold(2, 41, "c-1", "E11000", attempts, 0.0, [])
    assert hold.describe().startswith(
        f"partition 2 held at offset 41 (commandId c-1): the store refused it {attempts} time(s)"
    )


def test_a_lost_group_membership_makes_readiness_fail_until_the_group_assigns_again() -> None:
    bad = update(A, title="refused")
    projector, consumer = loop(Store({bad.command_id}))
    parts = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
    projector._on_assign(consumer, parts)
    projector._process([message(0, 3, bad)], {})
    assert 0 in projector.holds and projector.health.kafka_ok
    # the session timed out while the cluster was down: the partitions are gone, not handed over
    projector._on_lost(consumer, parts)
    assert projector.health.assignment == [] and projector.holds == {}
    assert "kafka unreachable or consumer not yet joined" in projector.health.problems()
    projector._on_assign(consumer, parts)
    assert projector.health.kafka_ok and projector.health.assignment == [0, 1]
    assert "kafka unreachable or consumer not yet joined" not in projector.health.problems()


def test_an_ordinary_rebalance_keeps_the_projector_ready() -> None:
    projector, consumer = loop(Store(set()))
    parts = [TopicPartition(TOPIC, 0)]
    projector._on_assign(consumer, parts)
    projector._on_revoke(consumer, parts)
    assert projector.health.kafka_ok  # another member took the partitions over
    assert projector.health.assignment == []
