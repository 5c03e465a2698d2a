"""A partition held at a record the store keeps refusing (the loop pauses it and retries)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Message

# The first retry of held or parked work; later retries double up to the configured cap.
HOLD_FIRST_RETRY_SECONDS = 1.0


@dataclass
class PartitionHold:
    """A partition paused at a record the store refuses; its later records wait in memory."""

    partition: int
    offset: int
    command_id: str
    error: str
    attempts: int
    retry_at: float
    messages: list[Message]

    def describe(self) -> str:
        wait = max(self.retry_at - time.monotonic(), 0.0)
        return (
            f"partition {self.partition} held at offset {self.offset} "
            f"(commandId {self.command_id}): the store refused it {self.attempts} time(s): "
            f"{self.error}; next retry in {wait:.0f} s"
        )
