"""The consistency token of a 202: where the command sits on the log, opaque to clients."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass


class BadToken(ValueError):
    pass


@dataclass(frozen=True)
class ConsistencyToken:
    command_id: str
    partition: int
    offset: int

    def encode(self) -> str:
        raw = json.dumps({"c": self.command_id, "p": self.partition, "o": self.offset}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> ConsistencyToken:
        if not text or len(text) > 200:
            raise BadToken("malformed consistency token")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
            token = cls(str(uuid.UUID(data["c"])), int(data["p"]), int(data["o"]))
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise BadToken("malformed consistency token") from exc
        if not isinstance(data["p"], int) or not isinstance(data["o"], int):
            raise BadToken("malformed consistency token")
        if token.partition < 0 or token.offset < 0:
            raise BadToken("malformed consistency token")
        return token
