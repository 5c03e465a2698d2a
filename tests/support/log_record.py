"""One record as the tests read it back from a Kafka topic: position, key, value, headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.commands import CommandEnvelope
from schemas.codec import CommandCodec


@dataclass(frozen=True)
class LogRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict, hash=False)

    @property
    def key_text(self) -> str | None:
        """The key as text (the command API keys each record by its commandId)."""
        return self.key.decode() if self.key is not None else None

    def command(self, codec: CommandCodec | None = None) -> CommandEnvelope:
        return (codec or CommandCodec()).decode(self.value)
