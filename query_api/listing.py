"""The list query: which parameters exist, and the store filter they become (pure, no I/O).

Only this module decides which store fields a list request can touch: the
filter keys are fixed here and every value is a validated plain string, so no
operator a client writes can reach the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field
from pymongo import ASCENDING

from domain.commands import Priority, Status
from domain.rules import timestamp
from query_api.cursor import Cursor
from servicekit.read_model import LIST_FILTER_INDEXES

# public query parameter -> field of the item document
FILTER_FIELDS: Mapping[str, str] = {
    "status": "status",
    "assignee": "assignee",
    "priority": "priority",
    "tag": "tags",
}
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class ListFilters(BaseModel):
    """The filter and limit parameters of GET /action-items, declared once: the route takes
    them (with its cursor) as one query model, so FastAPI publishes and validates each field
    as a query parameter. A new filter: a field here and its FILTER_FIELDS entry."""

    status: Status | None = None
    assignee: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    priority: Priority | None = None
    tag: Annotated[str | None, Field(min_length=1, max_length=50)] = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT

    def filters(self) -> dict[str, str]:
        """The filters given, as their plain string values, in FILTER_FIELDS order."""
        given = {name: getattr(self, name) for name in FILTER_FIELDS}
        return {name: str(value) for name, value in given.items() if value is not None}


LIST_PARAMS = frozenset({*ListFilters.model_fields, "cursor"})
assert set(FILTER_FIELDS) <= LIST_PARAMS, "every filter is a query parameter"
# The list order: both keys are fixed at creation and (createdAt, _id) is unique.
ORDER = (("createdAt", ASCENDING), ("_id", ASCENDING))

# Window search (docs/query-api.md, "What a page costs"): the local store sorts
# every row a query matches before applying the limit, so a page is read as a
# series of queries, each bounded above on createdAt, the bound growing from
# where the page starts until the page is full. Each query then sorts only the
# rows of its window.
FIRST_WINDOW = timedelta(seconds=4)
MAX_GROWTH = 16
# A window ending this far past the API's clock is dropped for an unbounded
# query: createdAt is another host's clock, so it may run slightly ahead.
CLOCK_SKEW = timedelta(minutes=10)


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


def start_position(query: ListQuery) -> tuple[str, str] | None:
    """The (createdAt, id) the page starts strictly after, or None for the first page."""
    return (query.after.created_at, query.after.item_id) if query.after is not None else None


def store_filter(
    query: ListQuery, after: tuple[str, str] | None = None, before: str | None = None
) -> dict[str, Any]:
    """The store filter of a list query: strictly after ``after`` (default: the query's
    cursor) and, when ``before`` is given, with createdAt strictly before it."""
    out: dict[str, Any] = {FILTER_FIELDS[name]: value for name, value in query.filters.items()}
    position = after or start_position(query)
    if position is not None:
        out.update(after_position(*position))
    if before is not None:
        out.setdefault("createdAt", {})["$lt"] = before
    return out


def index_for(query: ListQuery) -> str:
    """The index every query of this list reads (passed as a hint, so the plan is fixed).

    A single-valued filter's (field, createdAt, _id) index bounds the scan by the
    filter and the window together; assignee first, as the likeliest to be narrow.
    Otherwise (no filter, or only `tag`) the order index bounds it by the window
    and the store checks the tag on the rows of the window.
    """
    for name, index in LIST_FILTER_INDEXES.items():
        if name in query.filters:
            return index
    return "list_order"


def parse_timestamp(text: str) -> datetime | None:
    """A read-model timestamp as an aware datetime; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def window_end(start: datetime, width: timedelta, now: datetime) -> str | None:
    """The createdAt bound of a window of ``width`` from ``start``; None (no bound) once the
    window reaches past ``now`` plus the clock skew, so the last query misses nothing."""
    try:
        end = start + width
    except OverflowError:
        return None
    # In UTC, as stored: the bound is compared with stored createdAt as a string.
    return None if end > now + CLOCK_SKEW else timestamp(end.astimezone(UTC))


def next_width(width: timedelta, wanted: int, found: int) -> timedelta:
    """The next window's width after one of ``width`` held ``found`` of ``wanted`` rows.

    Grows at least 2x (so a page takes a logarithmic number of queries) and at
    most MAX_GROWTH x; in between, by the density seen so far with a margin, so
    a window rarely holds much more than one page of matching rows.
    """
    if found <= 0:
        return width * MAX_GROWTH
    return width * min(float(MAX_GROWTH), max(2.0, 1.5 * wanted / found))
