"""The consistency token of a 202: where the command sits on the log, opaque to clients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from servicekit.tokens import BadTokenText, decode_token, encode_token


class BadToken(ValueError):
    pass


@dataclass(frozen=True)
class ConsistencyToken:
    command_id: str
    partition: int
    offset: int

    def encode(self) -> str:
        # default JSON separators: the format every issued token already has
        fields = {"c": self.command_id, "p": self.partition, "o": self.offset}
        return encode_token(fields, compact=False)

    @classmethod
    def decode(cls, text: str) -> ConsistencyToken:
        try:
            data = decode_token(text)
            command_id, partition, offset = data["c"], data["p"], data["o"]
            # check the types first: uuid.UUID() of a non-string raises AttributeError
            if not isinstance(command_id, str) or not all(
                type(v) is int for v in (partition, offset)
            ):
                raise ValueError("consistency token fields have the wrong types")
            token = cls(str(uuid.UUID(command_id)), partition, offset)
        except (BadTokenText, ValueError, KeyError, TypeError) as exc:
            raise BadToken("malformed consistency token") from exc
        if token.partition < 0 or token.offset < 0:
            raise BadToken("malformed consistency token")
        return token
