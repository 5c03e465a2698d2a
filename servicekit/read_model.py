"""Where the read model lives in the store, shared by the projector (writer) and the query API.

A read model is a *generation* of seven collections. The active generation is
named by one pointer document, so a rebuild can build a new generation beside
the live one and swap it in with a single-document update (atomic on any
MongoDB-wire store, no transaction needed).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymongo import ASCENDING
from pymongo.errors import OperationFailure

from servicekit.store_types import StoreCollection, StoreDatabase

META_COLLECTION = "read_model_meta"
POINTER_ID = "active"
INITIAL_GENERATION = "g0"

# The list indexes (docs/query-api.md, "Indexes"): the list order, and each
# single-valued filter followed by it. On DocumentDB they are created as ordered
# (composite-term) indexes, whose terms are whole (field, createdAt, _id) tuples,
# so an equality plus a createdAt range is one index range scan of the rows in
# that range. `tags` has none: on an array field DocumentDB does not bound the
# scan by the createdAt range, so a tag filter is read through `list_order`.
LIST_ORDER = [("createdAt", ASCENDING), ("_id", ASCENDING)]
LIST_FILTER_INDEXES = {field: f"list_{field}" for field in ("assignee", "status", "priority")}
LIST_INDEXES: dict[str, list[tuple[str, int]]] = {
    "list_order": LIST_ORDER,
    **{name: [(field, ASCENDING), *LIST_ORDER] for field, name in LIST_FILTER_INDEXES.items()},
}
# The earlier (unordered) list indexes with the same keys: a store may refuse
# two indexes on one key pattern, so each is dropped before its successor is made.
LEGACY_LIST_INDEXES = {
    "list_order": "order",
    **{name: f"by_{field}" for field, name in LIST_FILTER_INDEXES.items()},
}
# Dropped without a successor.
RETIRED_LIST_INDEXES = ("by_tags",)
# Codes of a store that does not know the option (MongoDB): create a plain index.
_UNKNOWN_INDEX_OPTION = {2, 67, 197}
_INDEX_NOT_FOUND = 27


@dataclass(frozen=True)
class ReadModel:
    """The collections of one generation."""

    db: StoreDatabase
    generation: str

    def _name(self, base: str) -> str:
        return f"{base}_{self.generation}"

    @staticmethod
    def items_name(generation: str) -> str:
        """The items collection's name in ``generation`` (for a client of another kind)."""
        return f"action_items_{generation}"

    @property
    def items(self) -> StoreCollection:
        return self.db[self.items_name(self.generation)]

    @property
    def commands(self) -> StoreCollection:
        return self.db[self._name("command_status")]

    @property
    def positions(self) -> StoreCollection:
        return self.db[self._name("projector_positions")]

    @property
    def exceptions(self) -> StoreCollection:
        """Every item's whole Exceptions history: one record per entry, _id = commandId."""
        return self.db[self._name("item_exceptions")]

    @property
    def key_claims(self) -> StoreCollection:
        """Idempotency-Key claims: _id = "<key hash>:<partition>" -> the command that used it."""
        return self.db[self._name("idempotency_keys")]

    @property
    def parked_commands(self) -> StoreCollection:
        """Records of parked items, waiting in log order: _id = "<partition>:<offset>"."""
        return self.db[self._name("parked_commands")]

    @property
    def parked_items(self) -> StoreCollection:
        """Items whose writes the store refuses (projector/parking.py): _id = item id."""
        return self.db[self._name("parked_items")]

    def collection_names(self) -> list[str]:
        return [
            self.items.name,
            self.commands.name,
            self.positions.name,
            self.exceptions.name,
            self.key_claims.name,
            self.parked_commands.name,
            self.parked_items.name,
        ]

    def ensure_indexes(self) -> None:
        """Indexes for every list filter and the list order; idempotent."""
        present = set(self.items.index_information())
        for name, keys in LIST_INDEXES.items():
            if name in present:
                continue
            if LEGACY_LIST_INDEXES[name] in present:
                _drop_index(self.items, LEGACY_LIST_INDEXES[name])
            _create_ordered_index(self.items, keys, name)
        for name in RETIRED_LIST_INDEXES:
            if name in present:
                _drop_index(self.items, name)
        self.commands.create_index([("actionItemId", ASCENDING)], name="by_item")
        self.exceptions.create_index([("itemId", ASCENDING), ("seq", ASCENDING)], name="by_item")
        self.parked_commands.create_index([("itemId", ASCENDING)], name="by_item")
        # read-your-writes (query_api/consistency.py): is an item of this partition parked at
        # or before a token's offset? (one row per parked item, its first parked record)
        self.parked_items.create_index(
            [("partition", ASCENDING), ("offset", ASCENDING)], name="by_position"
        )

    def drop(self) -> None:
        for name in self.collection_names():
            self.db.drop_collection(name)


def _create_ordered_index(
    collection: StoreCollection, keys: list[tuple[str, int]], name: str
) -> None:
    """An ordered index on DocumentDB (``enableOrderedIndex``), a plain one on MongoDB."""
    try:
        collection.create_index(keys, name=name, enableOrderedIndex=True)
    except OperationFailure as exc:
        if exc.code not in _UNKNOWN_INDEX_OPTION:
            raise
        collection.create_index(keys, name=name)


def _drop_index(collection: StoreCollection, name: str) -> None:
    try:
        collection.drop_index(name)
    except OperationFailure as exc:
        if exc.code != _INDEX_NOT_FOUND:  # another process dropped it first
            raise


def active_generation(db: StoreDatabase) -> str:
    pointer = db[META_COLLECTION].find_one({"_id": POINTER_ID})
    return str(pointer["generation"]) if pointer else INITIAL_GENERATION


def active_read_model(db: StoreDatabase) -> ReadModel:
    return ReadModel(db, active_generation(db))


def swap_active_generation(db: StoreDatabase, generation: str) -> str | None:
    """Point readers and writers at another generation; returns the previous one."""
    before = db[META_COLLECTION].find_one_and_update(
        {"_id": POINTER_ID},
        {"$set": {"generation": generation}},
        upsert=True,
    )
    return str(before["generation"]) if before else None
