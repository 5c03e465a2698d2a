"""The command API's use case: put one command on the log and say whether the log took it.

A command is drafted (identity derived, acceptance stamped), given the key
registry's verdict when it carries an Idempotency-Key that another command
used first (``command_api/key_registry.py``; fail open when the registry does
not answer in time), encoded with the current Avro schema, and produced to
the partition of its ActionItem under a record key of its own attempt
(``schemas/record_key.py``; the commandId is in the value and the
``command.id`` header); it is accepted only once Kafka acknowledged it with
acks=all. Nothing here knows HTTP: the routes turn
``Acceptance`` into a 202 and ``NotConfirmed`` into a 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from command_api import metrics
from command_api.key_registry import KeyRegistryUnavailable
from command_api.publisher import Delivered, LogUnavailable
from domain.commands import CommandEnvelope
from schemas.codec import CommandCodec
from schemas.partitioning import partition_for
from schemas.record_key import COMMAND_ID_HEADER
from servicekit.consistency import ConsistencyToken

log = logging.getLogger("command_api")

Draft = Callable[[], CommandEnvelope]
"""Builds the command; called again if acceptance had to wait (the stamp follows the wait)."""

RecordHeaders = list[tuple[str, str | bytes | None]]


class CommandLog(Protocol):
    """What the use case needs of the log (command_api.publisher.CommandPublisher)."""

    @property
    def partition_count(self) -> int | None: ...

    async def load_partition_count(self, deadline: float) -> int: ...

    async def publish(
        self,
        command_id: str,
        value: bytes,
        partition: int,
        headers: RecordHeaders,
        dedupe: bool,
        deadline: float | None = None,
    ) -> Delivered: ...


@dataclass(frozen=True)
class Acceptance:
    """The log acknowledged the command (acks=all), at ``delivered``."""

    command: CommandEnvelope
    delivered: Delivered
    consistency_token: str


class NotConfirmed(Exception):
    """The log did not confirm the command within the bound; it may still hold it."""

    def __init__(self, command: CommandEnvelope, reason: str, *, maybe_written: bool) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason
        self.maybe_written = maybe_written


class KeyOwners(Protocol):
    """Who first used an Idempotency-Key (command_api.key_registry.KeyRegistry)."""

    async def owner(self, command: CommandEnvelope) -> str:
        """The owning commandId (the command's own when it is the first use); raises
        KeyRegistryUnavailable when that cannot be known within the registry's bound."""
        ...


class CommandService:
    def __init__(
        self,
        log: CommandLog,
        codec: CommandCodec,
        delivery_timeout: float,
        keys: KeyOwners | None = None,
    ) -> None:
        self.log = log
        self.codec = codec
        self.delivery_timeout = delivery_timeout
        self.keys = keys
        self._fingerprint = codec.writer.fingerprint_hex.encode()

    async def accept(self, draft: Draft, dedupe: bool) -> Acceptance:
        """Publish the drafted command, bounded by the delivery timeout; NotConfirmed if not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delivery_timeout
        command = draft()
        try:
            partitions = self.log.partition_count
            if partitions is None:
                partitions = await self.log.load_partition_count(deadline)
                # stamp acceptance after the wait: per partition, log order = acceptedAt order
                command = draft()
            command = await self._with_key_owner(command)
            headers = self._headers(command)
            started = loop.time()
            delivered = await self.log.publish(
                command.command_id,
                self.codec.encode(command),
                partition_for(command.action_item_id, partitions),
                headers,
                dedupe,
                deadline,
            )
        except LogUnavailable as exc:
            metrics.UNAVAILABLE.labels(exc.cause).inc()
            log.error(
                "command not confirmed by the log; answered 503",
                extra={
                    "commandId": command.command_id,
                    "reason": exc.reason,
                    "maybeWritten": exc.maybe_written,
                    "correlationId": command.correlation_id,
                    "waitedSeconds": round(loop.time() - deadline + self.delivery_timeout, 3),
                },
            )
            raise NotConfirmed(command, exc.reason, maybe_written=exc.maybe_written) from None
        if delivered.replayed:
            metrics.REPLAYED.inc()
        else:
            metrics.DELIVERY_SECONDS.observe(loop.time() - started)
        metrics.ACCEPTED.labels(command.kind).inc()
        log.info(
            "command accepted",
            extra={
                "commandId": command.command_id,
                "actionItemId": command.action_item_id,
                "partition": delivered.partition,
                "offset": delivered.offset,
                "replayed": delivered.replayed,
                "correlationId": command.correlation_id,
            },
        )
        token = ConsistencyToken(command.command_id, delivered.partition, delivered.offset)
        return Acceptance(command, delivered, token.encode())

    async def _with_key_owner(self, command: CommandEnvelope) -> CommandEnvelope:
        """A keyed command with the registry's verdict (schema v4 ``keyOwner``) when another
        command owns its key. Fail open: without an answer in time the command goes on
        without one (only the projector's per-partition rule then applies), counted and
        logged; the write side never waits on the store beyond the registry's bound."""
        if self.keys is None or command.idempotency_key_hash is None:
            return command
        try:
            owner = await self.keys.owner(command)
        except KeyRegistryUnavailable as exc:
            metrics.KEY_REGISTRY_UNAVAILABLE.inc()
            log.warning(
                "key registry unavailable: command accepted without a key verdict (a reuse of "
                "its Idempotency-Key on another partition will not be detected)",
                extra={
                    "commandId": command.command_id,
                    "reason": str(exc),
                    "correlationId": command.correlation_id,
                },
            )
            return command
        if owner == command.command_id:
            return command
        metrics.KEY_REUSES.inc()
        log.info(
            "Idempotency-Key already used by another command: it will be rejected",
            extra={
                "commandId": command.command_id,
                "keyOwner": owner,
                "correlationId": command.correlation_id,
            },
        )
        return replace(command, key_owner=owner)

    def _headers(self, command: CommandEnvelope) -> RecordHeaders:
        return [
            (COMMAND_ID_HEADER, command.command_id.encode()),
            ("schema.fingerprint", self._fingerprint),
            ("correlation.id", command.correlation_id.encode()),
            ("command.type", command.kind.encode()),
            ("content-type", b"application/vnd.apache.avro+single-object"),
        ]
