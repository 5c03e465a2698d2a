"""An item's whole Exceptions history, keyset-paged (GET /action-items/{id}/exceptions).

The projector numbers an item's entries 1, 2, 3 ... in the order it recorded
them (log order) and keeps every one as its own record (``seq``), writing the
records before the item that counts them (``exceptionCount``). So the entries
1..exceptionCount of an item are all stored, a page is the seq range
(after, after + limit] read through the (itemId, seq) index, and its cost is
the page's size whatever the item's past. A cursor is the last seq served: a
rejection recorded while a client pages gets a higher number, so paging never
skips or repeats an entry.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING

from query_api.repository import ReadRepository
from servicekit.store_errors import guarded
from servicekit.tokens import BadTokenText, decode_token, encode_token

RECORD_FIELDS = frozenset({"_id", "itemId", "seq"})  # the record's own, not the entry's
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 120


class BadHistoryCursor(ValueError):
    """The cursor is not one this API issued for this item."""


@dataclass(frozen=True)
class HistoryCursor:
    item_id: str
    after: int  # the seq of the last entry already served

    def encode(self) -> str:
        return encode_token(["x", self.item_id, self.after])

    @classmethod
    def decode(cls, text: str, item_id: str) -> HistoryCursor:
        try:
            fields = decode_token(text, MAX_CURSOR_LENGTH)
            if not isinstance(fields, list) or len(fields) != 3 or fields[0] != "x":
                raise ValueError("not an Exceptions cursor")
            _, cursor_item, after = fields
            if not isinstance(cursor_item, str) or str(uuid.UUID(cursor_item)) != cursor_item:
                raise ValueError("cursor item is not a canonical UUID")
            if not isinstance(after, int) or isinstance(after, bool) or after < 1:
                raise ValueError("cursor position out of range")
        except (BadTokenText, ValueError, TypeError) as exc:
            raise BadHistoryCursor("malformed cursor") from exc
        if cursor_item != item_id:
            raise BadHistoryCursor("cursor was issued for another ActionItem")
        return cls(cursor_item, after)


@dataclass(frozen=True)
class HistoryPage:
    entries: list[dict[str, Any]]
    next_after: int | None  # the cursor position when more entries follow
    count: int  # exceptionCount when the page was read

    def body(self, item_id: str) -> dict[str, Any]:
        cursor = None
        if self.next_after is not None:
            cursor = HistoryCursor(item_id, self.next_after).encode()
        return {"items": self.entries, "nextCursor": cursor}

    def etag(self, item_id: str) -> str:
        """A strong tag of this page's body: it changes when an entry on it moves, or when a
        rejection arrives after the last page (its nextCursor appears)."""
        text = json.dumps(self.body(item_id), sort_keys=True, separators=(",", ":"))
        return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def public_entry(doc: dict[str, Any]) -> dict[str, Any]:
    """A history record as the item shows its inline entries (the same fields, same values)."""
    return {name: value for name, value in doc.items() if name not in RECORD_FIELDS}


class ExceptionHistory:
    def __init__(self, repository: ReadRepository) -> None:
        self.repository = repository

    def page(self, item_id: str, after: int, limit: int) -> HistoryPage | None:
        """Entries after ``after`` (a seq), at most ``limit``; None for an unknown item."""
        return guarded(lambda: self._page(item_id, after, limit), refusal_is_outage=True)

    def _page(self, item_id: str, after: int, limit: int) -> HistoryPage | None:
        model = self.repository.read_model()
        item = model.items.find_one({"_id": item_id}, {"exceptionCount": 1, "exceptions": 1})
        if item is None:
            return None
        inline = list(item.get("exceptions") or [])
        if "exceptionCount" not in item:
            # written before bounded items: the whole history is still inline (a rebuild
            # moves it into the history records)
            chunk = inline[after : after + limit]
            more = after + len(chunk) < len(inline)
            return HistoryPage(
                [public_entry(e) for e in chunk], after + len(chunk) if more else None, len(inline)
            )
        count = int(item["exceptionCount"])
        upper = min(count, after + limit)
        docs: list[dict[str, Any]] = []
        if upper > after:
            docs = list(
                model.exceptions.find(
                    {"itemId": item_id, "seq": {"$gt": after, "$lte": upper}}
                ).sort([("seq", ASCENDING)])
            )
        return HistoryPage([public_entry(d) for d in docs], upper if upper < count else None, count)
