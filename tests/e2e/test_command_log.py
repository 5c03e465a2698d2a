"""The command API process on the real broker: what a 202 puts on the log, and how.

- an accepted command is on the log and decodes to exactly what was sent;
- record key = ``<commandId>.<attemptId>``, one per produced record; every
  command of one ActionItem in one partition, in acceptance order (many items,
  interleaved updates);
- record headers carry the commandId, the schema fingerprint and the correlation id;
- a keyed retry yields the same ids and leaves one record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from domain.commands import (
    CommandEnvelope,
    CreateActionItem,
    Priority,
    Status,
    UpdateActionItem,
)
from domain.identity import key_hash, payload_hash
from schemas.codec import writer_schema
from schemas.partitioning import partition_for
from servicekit.consistency import ConsistencyToken
from tests.support.auth import caller_headers
from tests.support.command_api import CommandApi, own_topics, running_command_api
from tests.support.command_log import by_command, read_records
from tests.support.log_record import LogRecord

PARTITIONS = 3


@pytest.fixture(scope="module")
def topic_env(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    with own_topics(kafka_bootstrap) as (_, env):
        yield env


@pytest.fixture(scope="module")
def api(
    topic_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CommandApi]:
    log_dir: Path = tmp_path_factory.mktemp("command-log")
    with running_command_api(topic_env, log_dir) as running:
        yield running


def log_of(api: CommandApi) -> list[LogRecord]:
    return read_records(api.env["KAFKA_BOOTSTRAP_SERVERS"], api.env["COMMANDS_TOPIC"])


def the_record(records: list[LogRecord], command_id: str) -> LogRecord:
    copies = by_command(records).get(command_id, [])
    assert len(copies) == 1, f"{command_id}: {len(copies)} records on the log"
    return copies[0]


def check_headers(record: LogRecord, correlation: str, kind: str) -> None:
    command = record.command()
    assert record.headers["command.id"] == command.command_id.encode()
    assert record.headers["schema.fingerprint"] == writer_schema().fingerprint_hex.encode()
    assert record.headers["correlation.id"] == correlation.encode()
    assert record.headers["command.type"] == kind.encode()
    assert record.value is not None
    assert record.value[:2] == b"\xc3\x01"
    assert record.value[2:10] == writer_schema().fingerprint


def test_an_accepted_command_is_on_the_log_exactly_as_sent(api: CommandApi) -> None:
    body = {
        "title": "  Write the runbook ",
        "description": "all of it",
        "assignee": "ops@example.com",
        "priority": "high",
        "dueDate": "2026-12-31",
        "tags": ["ops", "docs"],
    }
    before = datetime.now(tz=UTC).replace(microsecond=0)
    created = api.post(body, idempotency_key="key-1", x_client_id="team-a", x_correlation_id="c-1")
    assert created.status_code == 202, created.text
    accepted = created.json()
    item = accepted["actionItemId"]
    patch: dict[str, object] = {
        "title": "Rewrite",
        "description": None,
        "status": "in_progress",
        "tags": [],
    }
    updated = api.patch(item, patch, if_match='"1"', x_correlation_id="c-2")
    assert updated.status_code == 202, updated.text
    after = datetime.now(tz=UTC)
    records = log_of(api)

    create_record = the_record(records, accepted["commandId"])
    token = ConsistencyToken.decode(accepted["consistencyToken"])
    assert (create_record.partition, create_record.offset) == (token.partition, token.offset)
    assert create_record.partition == partition_for(item, PARTITIONS)
    check_headers(create_record, "c-1", "create")
    command = create_record.command()
    assert before <= command.accepted_at <= after
    normalized = {
        "title": "Write the runbook",
        "description": "all of it",
        "assignee": "ops@example.com",
        "priority": "high",
        "dueDate": "2026-12-31",
        "tags": ["ops", "docs"],
    }
    assert command == CommandEnvelope(
        command_id=accepted["commandId"],
        action_item_id=item,
        accepted_at=command.accepted_at,
        correlation_id="c-1",
        payload_hash=payload_hash("create", None, normalized, None),
        payload=CreateActionItem(
            title="Write the runbook",
            description="all of it",
            assignee="ops@example.com",
            priority=Priority.HIGH,
            dueDate="2026-12-31",
            tags=("ops", "docs"),
        ),
        idempotency_key_hash=key_hash("team-a", "key-1"),
        expected_version=None,
        client_id="team-a",
        caller="team-a",
    )

    update_record = the_record(records, updated.json()["commandId"])
    assert update_record.partition == create_record.partition
    assert update_record.offset > create_record.offset
    check_headers(update_record, "c-2", "update")
    update = update_record.command()
    assert update == CommandEnvelope(
        command_id=updated.json()["commandId"],
        action_item_id=item,
        accepted_at=update.accepted_at,
        correlation_id="c-2",
        payload_hash=payload_hash("update", item, patch, 1),
        payload=UpdateActionItem(
            fields_set=frozenset(patch),
            title="Rewrite",
            description=None,
            status=Status.IN_PROGRESS,
            tags=(),
        ),
        idempotency_key_hash=None,
        expected_version=1,
        client_id=None,
        caller="anonymous",
    )
    assert update.accepted_at >= command.accepted_at


def test_per_item_order_on_the_log_with_interleaved_updates(api: CommandApi) -> None:
    items, updates = 30, 4

    async def run() -> dict[str, list[tuple[str, str, ConsistencyToken]]]:
        sent: dict[str, list[tuple[str, str, ConsistencyToken]]] = {}
        limits = httpx.Limits(max_connections=30)
        async with httpx.AsyncClient(
            headers=caller_headers("anonymous"), base_url=api.url, timeout=20, limits=limits
        ) as client:

            async def one_item(n: int) -> None:
                corr = f"item{n}-create"
                r = await client.post(
                    "/action-items", json={"title": "v0"}, headers={"X-Correlation-Id": corr}
                )
                assert r.status_code == 202, r.text
                item = r.json()["actionItemId"]
                history = [(r.json()["commandId"], corr, token_of(r))]
                for i in range(1, updates + 1):
                    corr = f"item{n}-update{i}"
                    r = await client.patch(
                        f"/action-items/{item}",
                        json={"title": f"v{i}"},
                        headers={"X-Correlation-Id": corr},
                    )
                    assert r.status_code == 202, r.text
                    history.append((r.json()["commandId"], corr, token_of(r)))
                sent[item] = history

            await asyncio.gather(*(one_item(n) for n in range(items)))
        return sent

    sent = asyncio.run(run())
    records = log_of(api)
    on_log_by_command = {r.command_id: r for r in records}
    assert len({r.key for r in records}) == len(records), "two records share a key"
    interleaved = 0
    for item, history in sent.items():
        on_log = [on_log_by_command[command_id] for command_id, _, _ in history]
        partition = partition_for(item, PARTITIONS)
        assert {r.partition for r in on_log} == {partition}, item
        offsets = [r.offset for r in on_log]
        assert offsets == sorted(offsets), f"{item}: log order is not acceptance order"
        interleaved += offsets[-1] - offsets[0] + 1 - len(offsets)
        commands = [r.command() for r in on_log]
        assert [c.command_id for c in commands] == [r.command_id for r in on_log]
        assert [c.action_item_id for c in commands] == [item] * len(history)
        assert [c.payload.title for c in commands] == [f"v{i}" for i in range(updates + 1)]
        for (command_id, corr, token), record in zip(history, on_log, strict=True):
            key = record.key_text
            assert key is not None and key.startswith(f"{command_id}."), key
            assert (token.partition, token.offset) == (record.partition, record.offset)
            check_headers(record, corr, "create" if corr.endswith("create") else "update")
    # other items' commands landed between one item's commands: the updates did interleave
    assert interleaved > 0


def test_concurrent_updates_of_one_item_are_logged_in_acceptance_order(api: CommandApi) -> None:
    created = api.post({"title": "hot item"})
    assert created.status_code == 202
    item = created.json()["actionItemId"]

    async def run() -> list[str]:
        async with httpx.AsyncClient(
            headers=caller_headers("anonymous"), base_url=api.url, timeout=20
        ) as client:
            answers = await asyncio.gather(
                *(client.patch(f"/action-items/{item}", json={"title": f"t{i}"}) for i in range(20))
            )
        assert all(a.status_code == 202 for a in answers)
        return [a.json()["commandId"] for a in answers]

    command_ids = set(asyncio.run(run()))
    mine = [r for r in log_of(api) if r.command_id in command_ids]
    assert len(mine) == 20
    assert {r.partition for r in mine} == {partition_for(item, PARTITIONS)}
    accepted = [r.command().accepted_at for r in sorted(mine, key=lambda r: r.offset)]
    assert accepted == sorted(accepted)


def test_a_keyed_retry_gets_the_same_ids_and_leaves_one_record(api: CommandApi) -> None:
    body = {"title": "once", "tags": ["a"]}
    replayed_before = api.metric("command_api_retries_from_memory_total")
    first = api.post(body, idempotency_key="retry-1", x_client_id="team-r")
    second = api.post(body, idempotency_key="retry-1", x_client_id="team-r")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert api.metric("command_api_retries_from_memory_total") == replayed_before + 1

    other_caller = api.post(body, idempotency_key="retry-1", x_client_id="team-s")
    reused_key = api.post({"title": "different"}, idempotency_key="retry-1", x_client_id="team-r")
    assert other_caller.json()["actionItemId"] != first.json()["actionItemId"]
    # same key, other payload: same item, a *different* command (the projector rejects it
    # as IDEMPOTENCY_KEY_REUSED)
    assert reused_key.json()["actionItemId"] == first.json()["actionItemId"]
    assert reused_key.json()["commandId"] != first.json()["commandId"]

    copies = by_command(log_of(api))
    assert len(copies[first.json()["commandId"]]) == 1
    assert len(copies[reused_key.json()["commandId"]]) == 1


def token_of(response: httpx.Response) -> ConsistencyToken:
    return ConsistencyToken.decode(response.json()["consistencyToken"])


def test_accepted_at_is_the_moment_of_acceptance(api: CommandApi) -> None:
    started = time.time()
    answer = api.post({"title": "when"})
    finished = time.time()
    record = the_record(log_of(api), answer.json()["commandId"])
    accepted = record.command().accepted_at.timestamp()
    assert started - 0.001 <= accepted <= finished
