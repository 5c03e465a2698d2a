"""The opaque list cursor: where the last page ended, in the list's keyset order.

The list order is (createdAt, id): both are set when an ActionItem is created
and never change, and id is unique, so "strictly after the last item seen" is a
position that updates cannot move (see docs/query-api.md). A cursor also carries
a digest of the filters it was issued for, so it cannot silently be reused for
another query.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from servicekit.tokens import BadTokenText, decode_token, encode_token

# The read model's timestamps are ISO 8601 ("2026-11-25T10:00:00.000Z"); the
# cursor accepts only characters that can occur in one, so it is never more
# than a plain string comparison in the store.
_TIMESTAMP = re.compile(r"^[0-9A-Za-z:.+\-]{1,40}$")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")
MAX_CURSOR_LENGTH = 200


class BadCursor(ValueError):
    """The cursor is not one this API issued (or not for this query)."""


def filters_digest(filters: Mapping[str, str]) -> str:
    """A short, order-independent fingerprint of a list query's filters."""
    canonical = json.dumps(sorted(filters.items()), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cursor:
    created_at: str
    item_id: str
    digest: str

    def encode(self) -> str:
        return encode_token([self.created_at, self.item_id, self.digest])

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor; BadCursor for anything that is not exactly what encode() makes."""
        try:
            fields = decode_token(text, MAX_CURSOR_LENGTH)
            if not isinstance(fields, list) or len(fields) != 3:
                raise ValueError("cursor must be a list of three fields")
            created_at, item_id, digest = fields
            if not all(isinstance(v, str) for v in (created_at, item_id, digest)):
                raise ValueError("cursor fields must be strings")
            if not _TIMESTAMP.match(created_at) or not _DIGEST.match(digest):
                raise ValueError("cursor field out of range")
            if str(uuid.UUID(item_id)) != item_id:
                raise ValueError("cursor id is not a canonical UUID")
        except (BadTokenText, ValueError, TypeError) as exc:
            raise BadCursor("malformed cursor") from exc
        return cls(created_at, item_id, digest)

    def check_filters(self, filters: Mapping[str, str]) -> None:
        if self.digest != filters_digest(filters):
            raise BadCursor("cursor was issued for different filters")
