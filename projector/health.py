"""What the projector's /readyz reports, and the store commands still waiting for an answer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pymongo import monitoring


class InFlightCommands(monitoring.CommandListener):
    """Every command the projector's MongoClient has sent and not yet had answered.

    Registered on the client, so a hang anywhere (a batch write, the hand-over
    check, a ping) shows up, not only in the calls the loop wraps.
    """

    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self._started[event.request_id] = time.monotonic()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            self._started.pop(event.request_id, None)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self._started.pop(event.request_id, None)

    def oldest_seconds(self) -> float:
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return time.monotonic() - oldest if oldest is not None else 0.0


@dataclass
class Health:
    """What /readyz reports; written by the loop, read by the HTTP thread."""

    store_ok: bool = False
    kafka_ok: bool = False
    last_error: str | None = None
    assignment: list[int] = field(default_factory=list)
    store_commands: InFlightCommands = field(default_factory=InFlightCommands)
    store_stall_seconds: float = 6.0
    dead_letter_error: str | None = None
    held: tuple[str, ...] = ()
    parked: tuple[str, ...] = ()  # one line per parked item (projector/parking.py)

    def problems(self) -> list[str]:
        out = []
        waited = self.store_commands.oldest_seconds()
        if waited > self.store_stall_seconds:
            out.append(f"store not answering: a command has been waiting {waited:.0f} s")
        elif not self.store_ok:
            out.append(f"store unreachable: {self.last_error or 'not yet checked'}")
        if not self.kafka_ok:
            out.append("kafka unreachable or consumer not yet joined")
        if self.dead_letter_error:
            out.append(f"dead-letter topic not taking records: {self.dead_letter_error}")
        out.extend(self.held)
        out.extend(self.parked)
        return out
