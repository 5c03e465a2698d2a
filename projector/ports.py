"""What the loop needs of its collaborators, as protocols: real adapters and test stand-ins fit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from confluent_kafka import Consumer, Message, TopicPartition

from domain.planning import BatchPlan, CommandRecord

RebalanceCallback = Callable[[Consumer, list[TopicPartition]], None]


class Projection(Protocol):
    """Applies decoded records to the read model (projector/apply.py over the store)."""

    def apply(self, records: Sequence[CommandRecord]) -> BatchPlan: ...
    def ping(self) -> None: ...
    def ensure_indexes(self) -> None: ...


class CommandConsumer(Protocol):
    """The part of confluent_kafka's Consumer the loop uses."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = ...,
        on_revoke: RebalanceCallback | None = ...,
        on_lost: RebalanceCallback | None = ...,
    ) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition]: ...
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int]: ...
    def close(self) -> None: ...


class DeadLetterSink(Protocol):
    """Takes undecodable records; raises DeadLetterUnavailable unless the broker took them all."""

    def send(self, messages: Sequence[tuple[Message, str]]) -> None: ...


class BatchGate(Protocol):
    """Lets a rebuild pause the loop between batches (projector/handover.py)."""

    def before_batch(self) -> None: ...
    def leave(self) -> None: ...
