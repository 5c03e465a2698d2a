"""The opaque list cursor: the (createdAt, id) of the last item of a page (keyset pagination)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    created_at: str
    item_id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at, self.item_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            created_at, item_id = json.loads(raw)
            if not isinstance(created_at, str) or not isinstance(item_id, str):
                raise ValueError("cursor fields must be strings")
            if len(created_at) > 40:
                raise ValueError("cursor timestamp too long")
            return cls(created_at, str(uuid.UUID(item_id)))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise BadCursor("malformed cursor") from exc
