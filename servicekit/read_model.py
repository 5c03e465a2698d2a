"""Where the read model lives in the store, shared by the projector (writer) and the query API.

A read model is a *generation* of three collections. The active generation is
named by one pointer document, so a rebuild can build a new generation beside
the live one and swap it in with a single-document update (atomic on any
MongoDB-wire store, no transaction needed).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymongo import ASCENDING

from servicekit.store_types import StoreCollection, StoreDatabase

META_COLLECTION = "read_model_meta"
POINTER_ID = "active"
INITIAL_GENERATION = "g0"


@dataclass(frozen=True)
class ReadModel:
    """The collections of one generation."""

    db: StoreDatabase
    generation: str

    def _name(self, base: str) -> str:
        return f"{base}_{self.generation}"

    @property
    def items(self) -> StoreCollection:
        return self.db[self._name("action_items")]

    @property
    def commands(self) -> StoreCollection:
        return self.db[self._name("command_status")]

    @property
    def positions(self) -> StoreCollection:
        return self.db[self._name("projector_positions")]

    def collection_names(self) -> list[str]:
        return [self.items.name, self.commands.name, self.positions.name]

    def ensure_indexes(self) -> None:
        """Indexes for every list filter and the list order; idempotent."""
        order = [("createdAt", ASCENDING), ("_id", ASCENDING)]
        self.items.create_index(order, name="order")
        for field in ("status", "assignee", "priority", "tags"):
            self.items.create_index([(field, ASCENDING), *order], name=f"by_{field}")
        self.commands.create_index([("actionItemId", ASCENDING)], name="by_item")

    def drop(self) -> None:
        for name in self.collection_names():
            self.db.drop_collection(name)


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
