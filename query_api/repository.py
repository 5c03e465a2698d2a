"""The query API's adapter to the store: reads of the active read-model generation."""

from __future__ import annotations

import threading
import time
from typing import Any

from pymongo import ASCENDING, MongoClient
from pymongo.errors import PyMongoError

from query_api.cursor import Cursor
from servicekit.read_model import ReadModel, active_generation

PUBLIC_ITEM_FIELDS = {"_log": 0, "_idem": 0}


class StoreUnavailable(Exception):
    pass


def public_item(doc: dict[str, Any]) -> dict[str, Any]:
    out = {"id": doc["_id"]}
    out.update({k: v for k, v in doc.items() if not k.startswith("_")})
    return out


def public_status(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "commandId": doc["commandId"],
        "actionItemId": doc["actionItemId"],
        "status": doc["status"],
        "exception": doc.get("exception"),
        "processedAt": doc["processedAt"],
    }


class ReadRepository:
    def __init__(self, client: MongoClient, database: str, cache_seconds: float) -> None:
        self._client = client
        self._db = client[database]
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, ReadModel] | None = None

    def read_model(self) -> ReadModel:
        now = time.monotonic()
        with self._lock:
            if self._cached is None or now - self._cached[0] > self._cache_seconds:
                self._cached = (now, ReadModel(self._db, active_generation(self._db)))
            return self._cached[1]

    def ensure_indexes(self) -> None:
        self._guard(lambda: self.read_model().ensure_indexes())

    def ping(self) -> None:
        self._guard(lambda: self._client.admin.command("ping"))

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        doc = self._guard(
            lambda: self.read_model().items.find_one({"_id": item_id}, PUBLIC_ITEM_FIELDS)
        )
        return public_item(doc) if doc else None

    def get_status(self, command_id: str) -> dict[str, Any] | None:
        doc = self._guard(lambda: self.read_model().commands.find_one({"_id": command_id}))
        return public_status(doc) if doc else None

    def list_items(
        self, filters: dict[str, str], limit: int, after: Cursor | None
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        query: dict[str, Any] = dict(filters)
        if after is not None:
            query["$or"] = [
                {"createdAt": {"$gt": after.created_at}},
                {"createdAt": after.created_at, "_id": {"$gt": after.item_id}},
            ]

        def run() -> list[dict[str, Any]]:
            cursor = (
                self.read_model()
                .items.find(query, PUBLIC_ITEM_FIELDS)
                .sort([("createdAt", ASCENDING), ("_id", ASCENDING)])
                .limit(limit + 1)
            )
            return list(cursor)

        docs = self._guard(run)
        more = len(docs) > limit
        docs = docs[:limit]
        next_cursor = Cursor(docs[-1]["createdAt"], docs[-1]["_id"]) if more and docs else None
        return [public_item(d) for d in docs], next_cursor

    def positions(self) -> dict[int, int]:
        docs = self._guard(lambda: list(self.read_model().positions.find({})))
        return {int(d["partition"]): int(d["nextOffset"]) for d in docs}

    @staticmethod
    def _guard(fn: Any) -> Any:
        try:
            return fn()
        except PyMongoError as exc:
            raise StoreUnavailable(str(exc)) from exc
