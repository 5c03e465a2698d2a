"""The list query: which parameters exist, and the store filter they become (pure, no I/O).

Only this module decides which store fields a list request can touch: the
filter keys are fixed here and every value is a validated plain string, so no
operator a client writes can reach the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING

from query_api.cursor import Cursor

# public query parameter -> field of the item document
FILTER_FIELDS: Mapping[str, str] = {
    "status": "status",
    "assignee": "assignee",
    "priority": "priority",
    "tag": "tags",
}
LIST_PARAMS = frozenset({*FILTER_FIELDS, "limit", "cursor"})
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# The list order: both keys are fixed at creation and (createdAt, _id) is unique.
ORDER = (("createdAt", ASCENDING), ("_id", ASCENDING))


@dataclass(frozen=True)
class ListQuery:
    filters: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None

    def __post_init__(self) -> None:
        for name, value in self.filters.items():
            if name not in FILTER_FIELDS or not isinstance(value, str):
                raise ValueError(f"not a list filter: {name}={value!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit out of range: {self.limit}")


def parameter_errors(params: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Unknown and repeated query parameters, as problem-body errors (empty when fine)."""
    seen: dict[str, int] = {}
    for name, _ in params:
        seen[name] = seen.get(name, 0) + 1
    errors = [
        {"field": name, "message": "unknown query parameter"}
        for name in sorted(seen)
        if name not in LIST_PARAMS
    ]
    errors += [
        {"field": name, "message": "given more than once"}
        for name in sorted(seen)
        if name in LIST_PARAMS and seen[name] > 1
    ]
    return errors


def after_position(created_at: str, item_id: str) -> dict[str, Any]:
    """Strictly after (created_at, item_id) in ORDER.

    Written as a range on createdAt plus a tie-break, so a store can bound its
    index scan with the range and check the tie-break on the few rows at the edge.
    """
    return {
        "createdAt": {"$gte": created_at},
        "$or": [{"createdAt": {"$gt": created_at}}, {"_id": {"$gt": item_id}}],
    }


def store_filter(query: ListQuery, after: tuple[str, str] | None = None) -> dict[str, Any]:
    """The store filter of a list query, optionally continuing after another position."""
    out: dict[str, Any] = {FILTER_FIELDS[name]: value for name, value in query.filters.items()}
    position = after or (
        (query.after.created_at, query.after.item_id) if query.after is not None else None
    )
    if position is not None:
        out.update(after_position(*position))
    return out
