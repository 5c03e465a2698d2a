"""A running rebuild's lease, so a half-built generation whose rebuild was killed is dropped.

A rebuild that fails cleans up after itself; one killed with ``kill -9`` cannot.
While it runs, a rebuild keeps a lease document in the meta collection whose
``heartbeatAt`` a background thread renews every few seconds. The next rebuild
drops every generation whose lease stopped being renewed long ago (its process
is gone), never the active generation or the one kept for rollback.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from types import TracebackType

from pymongo.errors import PyMongoError

from servicekit.read_model import META_COLLECTION, POINTER_ID, ReadModel
from servicekit.store_types import StoreDatabase

log = logging.getLogger("projector.rebuild")
LEASE_KIND = "rebuild-lease"
HEARTBEAT_SECONDS = 3.0
ABANDONED_AFTER_SECONDS = 30.0  # ten missed renewals: the process is gone


class RebuildLease:
    """Held while a rebuild writes ``generation``: insert, renew in the background, delete."""

    def __init__(
        self, db: StoreDatabase, generation: str, heartbeat_seconds: float = HEARTBEAT_SECONDS
    ) -> None:
        self.meta = db[META_COLLECTION]
        self.generation = generation
        self.id = f"{LEASE_KIND}:{generation}"
        self.heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="rebuild-lease", daemon=True)

    def __enter__(self) -> RebuildLease:
        now = datetime.now(UTC)
        self.meta.replace_one(
            {"_id": self.id},
            {
                "kind": LEASE_KIND,
                "generation": self.generation,
                "startedAt": now,
                "heartbeatAt": now,
            },
            upsert=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(self.heartbeat_seconds + 1)
        with contextlib.suppress(PyMongoError):
            self.meta.delete_one({"_id": self.id})

    def _renew(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.meta.update_one({"_id": self.id}, {"$set": {"heartbeatAt": datetime.now(UTC)}})
            except PyMongoError as exc:  # the next renewal tries again
                log.warning("rebuild lease not renewed", extra={"error": str(exc)})


def drop_abandoned(
    db: StoreDatabase, abandoned_after: float = ABANDONED_AFTER_SECONDS
) -> list[str]:
    """Drop the generations of rebuilds that stopped renewing their lease; their names."""
    meta = db[META_COLLECTION]
    pointer = meta.find_one({"_id": POINTER_ID}) or {}
    keep = {pointer.get("generation"), pointer.get("previous")}
    cutoff = datetime.now(UTC) - timedelta(seconds=abandoned_after)
    dropped = []
    for lease in meta.find({"kind": LEASE_KIND, "heartbeatAt": {"$lt": cutoff}}):
        generation = str(lease["generation"])
        if generation not in keep:
            ReadModel(db, generation).drop()
            dropped.append(generation)
            log.warning(
                "dropped the half-built generation of a rebuild that stopped (killed?)",
                extra={"generation": generation, "startedAt": str(lease.get("startedAt"))},
            )
        meta.delete_one({"_id": lease["_id"], "heartbeatAt": lease["heartbeatAt"]})
    return dropped
