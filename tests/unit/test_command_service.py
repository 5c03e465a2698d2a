"""The command API's use case without HTTP: what it publishes, and what it says back."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from command_api import metrics
from command_api.key_registry import KeyRegistryUnavailable
from command_api.publisher import Delivered, LogUnavailable
from command_api.service import Acceptance, CommandService, Draft, NotConfirmed, RecordHeaders
from domain.commands import CommandEnvelope
from schemas.codec import CommandCodec
from schemas.partitioning import partition_for
from servicekit.consistency import ConsistencyToken
from tests.unit.builders import create


class Log:
    """A stand-in for the producer (this tests the use case, not Kafka)."""

    def __init__(self, partitions: int | None, fail: LogUnavailable | None = None) -> None:
        self._known = partitions
        self._partitions = partitions or 3
        self.fail = fail
        self.published: list[tuple[str, bytes, int, RecordHeaders, bool]] = []

    @property
    def partition_count(self) -> int | None:
        return self._known

    async def load_partition_count(self, deadline: float) -> int:
        self._known = self._partitions
        return self._partitions

    async def publish(
        self,
        command_id: str,
        value: bytes,
        partition: int,
        headers: RecordHeaders,
        dedupe: bool,
        deadline: float | None = None,
    ) -> Delivered:
        if self.fail is not None:
            raise self.fail
        self.published.append((command_id, value, partition, headers, dedupe))
        return Delivered(partition, 41)


def drafts() -> tuple[list[CommandEnvelope], Draft]:
    made: list[CommandEnvelope] = []

    def draft() -> CommandEnvelope:
        made.append(create(str(uuid.uuid4())))
        return made[-1]

    return made, draft


def test_an_acknowledged_command_is_accepted_with_its_position_as_the_token() -> None:
    log, codec = Log(partitions=3), CommandCodec()
    made, draft = drafts()
    service = CommandService(log, codec, 5)
    accepted = asyncio.run(service.accept(draft, dedupe=True))
    assert isinstance(accepted, Acceptance)
    command = made[-1]
    assert len(made) == 1, "the partition count was known: one draft"
    command_id, value, partition, headers, dedupe = log.published[0]
    assert (command_id, partition, dedupe) == (
        command.command_id,
        partition_for(command.action_item_id, 3),
        True,
    )
    assert codec.decode(value) == command
    assert dict(headers)["command.type"] == command.kind.encode()
    assert dict(headers)["command.id"] == command.command_id.encode()
    assert dict(headers)["correlation.id"] == command.correlation_id.encode()
    token = ConsistencyToken.decode(accepted.consistency_token)
    assert (token.command_id, token.partition, token.offset) == (command.command_id, partition, 41)


def test_the_command_is_drafted_again_after_waiting_for_the_partition_count() -> None:
    log = Log(partitions=None)
    made, draft = drafts()
    service = CommandService(log, CommandCodec(), 5)
    accepted = asyncio.run(service.accept(draft, dedupe=False))
    assert len(made) == 2, "acceptance is stamped after the wait"
    assert accepted.command is made[-1]


def test_a_log_that_does_not_confirm_is_not_confirmed_with_the_command() -> None:
    log = Log(partitions=3, fail=LogUnavailable("timed out", maybe_written=True))
    made, draft = drafts()
    service = CommandService(log, CommandCodec(), 5)
    with pytest.raises(NotConfirmed) as raised:
        asyncio.run(service.accept(draft, dedupe=True))
    assert raised.value.command is made[-1]
    assert (raised.value.reason, raised.value.maybe_written) == ("timed out", True)


# -- the key registry's verdict (schema v4 keyOwner) -----------------------------------


class Owners:
    """A stand-in for the key registry (its store behaviour is tested against the real store
    in tests/integration/test_key_registry.py): answers ``owner``, or raises ``fail``."""

    def __init__(self, owner: str | None = None, fail: bool = False) -> None:
        self._owner, self.fail = owner, fail
        self.asked: list[str] = []

    async def owner(self, command: CommandEnvelope) -> str:
        self.asked.append(command.command_id)
        if self.fail:
            raise KeyRegistryUnavailable("no answer within 500 ms")
        return self._owner or command.command_id


FIRST = "00000000-0000-4000-8000-000000000001"
SECOND = "00000000-0000-4000-8000-000000000002"


def keyed(key: str | None = "k") -> tuple[list[CommandEnvelope], Draft]:
    made: list[CommandEnvelope] = []

    def draft() -> CommandEnvelope:
        made.append(create(str(uuid.uuid4()), key=key, command_id=SECOND))
        return made[-1]

    return made, draft


def published_command(log: Log) -> CommandEnvelope:
    return CommandCodec().decode(log.published[-1][1])


def test_a_key_owned_by_another_command_travels_as_its_verdict() -> None:
    log, owners = Log(partitions=3), Owners(owner=FIRST)
    _, draft = keyed()
    before = metrics.KEY_REUSES._value.get()
    accepted = asyncio.run(CommandService(log, CommandCodec(), 5, keys=owners).accept(draft, True))
    assert owners.asked == [SECOND]
    assert accepted.command.key_owner == FIRST
    assert published_command(log).key_owner == FIRST
    assert metrics.KEY_REUSES._value.get() == before + 1


def test_the_first_use_or_its_retry_travels_without_a_verdict() -> None:
    log, owners = Log(partitions=3), Owners()
    _, draft = keyed()
    accepted = asyncio.run(CommandService(log, CommandCodec(), 5, keys=owners).accept(draft, True))
    assert owners.asked == [SECOND] and accepted.command.key_owner is None
    assert published_command(log).key_owner is None


def test_a_command_without_a_key_does_not_ask_the_registry() -> None:
    log, owners = Log(partitions=3), Owners(owner=FIRST)
    _, draft = keyed(key=None)
    accepted = asyncio.run(CommandService(log, CommandCodec(), 5, keys=owners).accept(draft, False))
    assert owners.asked == [] and accepted.command.key_owner is None


def test_an_unavailable_registry_fails_open_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log, owners = Log(partitions=3), Owners(fail=True)
    _, draft = keyed()
    before = metrics.KEY_REGISTRY_UNAVAILABLE._value.get()
    with caplog.at_level(logging.WARNING, logger="command_api"):
        accepted = asyncio.run(
            CommandService(log, CommandCodec(), 5, keys=owners).accept(draft, True)
        )
    assert accepted.command.key_owner is None and len(log.published) == 1
    assert metrics.KEY_REGISTRY_UNAVAILABLE._value.get() == before + 1
    (line,) = [r for r in caplog.records if "key registry unavailable" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert line.__dict__["commandId"] == SECOND
