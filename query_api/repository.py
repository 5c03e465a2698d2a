"""The query API's adapter to the store: reads of the active read-model generation.

Every read goes through ``read_model()``, which follows the active-generation
pointer (cached briefly), so a `projector rebuild` can swap generations at any
time. pymongo errors become ``StoreUnavailable`` here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from query_api.listing import (
    FIRST_WINDOW,
    ORDER,
    ListQuery,
    index_for,
    next_width,
    parse_timestamp,
    start_position,
    store_filter,
    window_end,
)
from query_api.models import ActionItem
from servicekit.read_model import ReadModel, active_generation
from servicekit.store_errors import StoreUnavailable, guarded
from servicekit.store_types import StoreClient, StoreCollection

log = logging.getLogger("query_api.repository")
__all__ = ["Page", "ReadRepository", "StatusRead", "StoreUnavailable"]
# How long the first page's window origin is trusted before one query rechecks it.
ORIGIN_RECHECK_SECONDS = 10.0
# How many lists (generation, filters) keep the width of window that last filled a page.
LEARNED_WIDTHS = 1024
# The learned width is this much wider than the createdAt span of the last page read.
WIDTH_MARGIN = 1.25
PUBLIC_ITEM_FIELDS = {"_log": 0, "_idem": 0}
T = TypeVar("T")


# A response field added after documents were projected without it has a default in the
# response model (query_api/models.py); an older document answers with that default.
ITEM_DEFAULTS = {
    name: field.get_default(call_default_factory=True)
    for name, field in ActionItem.model_fields.items()
    if not field.is_required()
}


def public_item(doc: dict[str, Any]) -> dict[str, Any]:
    out = {"id": doc["_id"]}
    out.update({k: v for k, v in doc.items() if not k.startswith("_")})
    for name, value in ITEM_DEFAULTS.items():
        out.setdefault(name, value)
    return out


def public_status(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "commandId": doc["commandId"],
        "actionItemId": doc["actionItemId"],
        "status": doc["status"],
        "exception": doc.get("exception"),
        "processedAt": doc["processedAt"],
    }


@dataclass(frozen=True)
class StatusRead:
    body: dict[str, Any]  # the public status
    parked: bool  # its item is parked at or before it: decided, not applied


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    # (createdAt, id) of the last item when more may follow, else None
    last: tuple[str, str] | None


class ReadRepository:
    def __init__(self, client: StoreClient, database: str, cache_seconds: float) -> None:
        self._client = client
        self._db = client[database]
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, ReadModel] | None = None
        self._indexed: set[str] = set()
        # generation -> (when checked, earliest createdAt)
        self._origins: dict[str, tuple[float, str]] = {}
        # (generation, filters) -> the first window's width for the next page of that list
        self._widths: dict[tuple[str, frozenset[tuple[str, str]]], timedelta] = {}

    def read_model(self) -> ReadModel:
        """The active generation; a generation seen for the first time gets its indexes."""
        with self._lock:
            model = self._fresh_cached()
            if model is None:
                model = ReadModel(self._db, active_generation(self._db))
                self._cached = (time.monotonic(), model)
        if model.generation not in self._indexed:
            model.ensure_indexes()
            self._indexed.add(model.generation)
            log.info("indexes ensured", extra={"generation": model.generation})
        return model

    def fresh_generation(self) -> str | None:
        """The active generation when the cached pointer is fresh and its indexes are
        ensured, else None: then ``read_model()`` (which may query) must run first."""
        model = self._fresh_cached()
        if model is None or model.generation not in self._indexed:
            return None
        return model.generation

    def _fresh_cached(self) -> ReadModel | None:
        """The cached active generation while it is younger than the cache period."""
        cached = self._cached
        if cached is None or time.monotonic() - cached[0] > self._cache_seconds:
            return None
        return cached[1]

    def current(self) -> ReadModel:
        """``read_model()``, with the store's errors as ours."""
        return self._guard(self.read_model)

    def ensure_indexes(self) -> None:
        self.current()

    def ping(self) -> None:
        self._guard(lambda: self._client.admin.command("ping"))

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        doc = self._guard(
            lambda: self.read_model().items.find_one({"_id": item_id}, PUBLIC_ITEM_FIELDS)
        )
        return public_item(doc) if doc else None

    def get_status(self, command_id: str) -> StatusRead | None:
        """The command's stored status, and whether it is parked: the projector stores a
        status before the item's write, so a command whose item the store then refused
        has a decision on record but no effect yet (one more query, by _id)."""

        def read() -> StatusRead | None:
            model = self.read_model()
            doc = model.commands.find_one({"_id": command_id})
            if doc is None:
                return None
            parked = "partition" in doc and self._parked(
                model, int(doc["partition"]), int(doc["offset"]), str(doc["actionItemId"])
            )
            return StatusRead(public_status(doc), parked)

        return self._guard(read)

    def list_items(self, query: ListQuery) -> Page:
        """One page in ORDER; ``last`` is set exactly when more matching items follow.

        Read as a series of window queries (listing.py, docs/query-api.md): each
        asks for the rows still wanted strictly after the last row so far and
        before a createdAt bound that grows from where the page starts, the last
        one unbounded. Each window is a key range after the previous one, so the
        page is in ORDER and is what one query over the whole range would give.
        """
        return self._guard(lambda: self._list(self.read_model(), query))

    def _list(self, model: ReadModel, query: ListQuery) -> Page:
        items = model.items
        wanted = query.limit + 1  # +1 tells whether more follow
        index = index_for(query)
        position = start_position(query)
        start = parse_timestamp(position[0]) if position else self._origin(model)
        now = datetime.now(UTC)
        learned = (model.generation, frozenset(query.filters.items()))
        width = self._widths.get(learned, FIRST_WINDOW)
        docs: list[dict[str, Any]] = []
        while True:
            bound = window_end(start, width, now) if start is not None else None
            # singleBatch (negative limit): FerretDB answers it without holding a
            # cursor open, several times faster than a multi-batch find.
            batch = list(
                items.find(
                    store_filter(query, position, bound),
                    PUBLIC_ITEM_FIELDS,
                    limit=-(wanted - len(docs)),
                )
                .sort(list(ORDER))
                .hint(index)
            )
            docs += batch
            if batch:
                position = _position(batch[-1])
            if len(docs) >= wanted or bound is None:
                break
            width = next_width(width, wanted, len(docs))
        if start is not None and len(docs) >= wanted:
            self._learn(learned, start, docs[-1])
        if len(docs) > query.limit:
            last = docs[query.limit - 1]
            return Page([public_item(d) for d in docs[: query.limit]], _position(last))
        if not docs:
            return Page([], None)
        # A single batch is capped at 16 MiB: a short page is the end only if
        # nothing matches after its last item.
        last = docs[-1]
        more = items.find_one(store_filter(query, _position(last)), {"_id": 1})
        return Page([public_item(d) for d in docs], _position(last) if more else None)

    def _learn(
        self, key: tuple[str, frozenset[tuple[str, str]]], start: datetime, last: dict[str, Any]
    ) -> None:
        """Remember how wide a window held this page, for the next page of the same list.

        Items are not created at an even pace, so a fixed first window holds a page
        in one query for one list and needs two or three for another (or for the
        same list elsewhere in time). The createdAt span the page covered, with a
        margin, is what the next page most likely needs: one query when the pace
        holds. Only a starting width: the windows still grow until the page is full.
        """
        end = parse_timestamp(str(last.get("createdAt", "")))
        if end is None or end <= start:
            return
        if key not in self._widths and len(self._widths) >= LEARNED_WIDTHS:
            self._widths.pop(next(iter(self._widths)), None)
        self._widths[key] = max((end - start) * WIDTH_MARGIN, timedelta(milliseconds=1))

    def _origin(self, model: ReadModel) -> datetime | None:
        """Where the first page's windows start: the earliest createdAt of the generation
        (None while it holds no item), rechecked every ORIGIN_RECHECK_SECONDS with one query
        for anything earlier. Only a hint: the first window has no lower bound, so an item
        created earlier than a stale origin is still listed (a wrong origin costs time)."""
        now = time.monotonic()
        cached = self._origins.get(model.generation)
        if cached is not None and now - cached[0] < ORIGIN_RECHECK_SECONDS:
            return parse_timestamp(cached[1])
        found = earliest_created(model.items, cached[1] if cached else None)
        if found is not None:
            self._origins[model.generation] = (now, found)
        return parse_timestamp(found) if found is not None else None

    def explain_list(self, query: ListQuery) -> dict[str, Any]:
        """The store's plan for the first window query of ``list_items`` (tests, operators)."""

        def run() -> dict[str, Any]:
            model = self.read_model()
            position = start_position(query)
            start = parse_timestamp(position[0]) if position else self._origin(model)
            now = datetime.now(UTC)
            bound = window_end(start, FIRST_WINDOW, now) if start is not None else None
            return dict(
                model.items.find(
                    store_filter(query, position, bound),
                    PUBLIC_ITEM_FIELDS,
                    limit=-(query.limit + 1),
                )
                .sort(list(ORDER))
                .hint(index_for(query))
                .explain()
            )

        return self._guard(run)

    def positions(self) -> dict[int, int]:
        """The projector's next offset per partition in the active generation."""
        docs = self._guard(lambda: list(self.read_model().positions.find({})))
        return {int(d["partition"]): int(d["nextOffset"]) for d in docs}

    def parked_at_or_before(self, partition: int, offset: int, item_id: str | None = None) -> bool:
        """True while an item is parked (projector/parking.py) at or before ``offset`` of
        ``partition``: the store refused its write, so its commands from there on wait and
        their effect is not in the read model. Only ``item_id`` when given, else any item.

        ``parked_items`` holds one row per parked item at its first parked record, so
        this is one small indexed query whatever the number of records waiting (a range
        query over ``parked_commands`` costs every record it matches on DocumentDB).
        """
        return self._guard(lambda: self._parked(self.read_model(), partition, offset, item_id))

    @staticmethod
    def _parked(model: ReadModel, partition: int, offset: int, item_id: str | None) -> bool:
        query: dict[str, Any] = {"partition": partition, "offset": {"$lte": offset}}
        if item_id is not None:
            query["_id"] = item_id
        return model.parked_items.find_one(query, {"_id": 1}) is not None

    @staticmethod
    def _guard(fn: Callable[[], T]) -> T:
        return guarded(fn, refusal_is_outage=True)


def earliest_created(
    items: StoreCollection, known: str | None = None, steps: int = 64
) -> str | None:
    """The earliest createdAt in ``items`` (None if empty), without a sort of the collection.

    Starts from ``known`` (a createdAt found earlier) or else from the first row
    the store finds, and asks for any row created before it until none is left.
    Each step costs the rows before the current one, and the store finds rows in
    physical order, which follows creation closely (the projector and a rebuild
    insert items in log order): a few cheap queries, one when nothing changed.
    Past ``steps`` of them it sorts.
    """
    current = known
    if current is None:
        doc = items.find_one({}, {"createdAt": 1})
        if doc is None:
            return None
        current = str(doc["createdAt"])
    for _ in range(steps):
        earlier = items.find_one({"createdAt": {"$lt": current}}, {"createdAt": 1})
        if earlier is None:
            return current
        current = str(earlier["createdAt"])
    doc = items.find_one({}, {"createdAt": 1}, sort=[ORDER[0]])
    return str(doc["createdAt"]) if doc is not None else None


def _position(doc: dict[str, Any]) -> tuple[str, str]:
    return (str(doc["createdAt"]), str(doc["_id"]))
