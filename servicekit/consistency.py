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
            command_id, partition, offset = data["c"], data["p"], data["o"]
            # check the types first: uuid.UUID() of a non-string raises AttributeError
            if not isinstance(command_id, str) or not all(
                type(v) is int for v in (partition, offset)
            ):
                raise ValueError("consistency token fields have the wrong types")
            token = cls(str(uuid.UUID(command_id)), partition, offset)
        except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise BadToken("malformed consistency token") from exc
        if token.partition < 0 or token.offset < 0:
            raise BadToken("malformed consistency token")
        return token
