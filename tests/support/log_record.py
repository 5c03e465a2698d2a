"""One record as the tests read it back from a Kafka topic: position, key, value, headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.commands import CommandEnvelope
from schemas.codec import CommandCodec
from schemas.record_key import COMMAND_ID_HEADER, command_id_of_key


@dataclass(frozen=True)
class LogRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict, hash=False)

    @property
    def key_text(self) -> str | None:
        """The key as text: ``<commandId>.<attemptId>``, one per produced record
        (records written before issue 20: the bare commandId)."""
        return self.key.decode() if self.key is not None else None

    @property
    def command_id(self) -> str | None:
        """The record's commandId: its ``command.id`` header, else the key's commandId part."""
        header = self.headers.get(COMMAND_ID_HEADER)
        return header.decode() if header is not None else command_id_of_key(self.key)

    def command(self, codec: CommandCodec | None = None) -> CommandEnvelope:
        return (codec or CommandCodec()).decode(self.value)
