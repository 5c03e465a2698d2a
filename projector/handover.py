"""The pause handshake between `projector rebuild` and running projectors.

Before a rebuild swaps its generation in, it asks every live `projector run`
to pause between batches. A paused projector has everything it committed to
Kafka in the old generation, so the rebuild can catch up to the log's current
end, swap the pointer, and release the pause; the projectors then go on in the
new generation, where the guards skip what the rebuild already applied.
See docs/rebuild.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from servicekit.read_model import META_COLLECTION
from servicekit.store_types import StoreDatabase

log = logging.getLogger("projector.handover")
CONTROL_ID = "handover"
MEMBERS_COLLECTION = "projector_members"
HEARTBEAT_SECONDS = 1.0
LIVE_WITHIN_SECONDS = 10.0


class HandoverControl:
    """The store side of the handshake: one control document and one document per projector."""

    def __init__(self, db: StoreDatabase) -> None:
        self._meta = db[META_COLLECTION]
        self._members = db[MEMBERS_COLLECTION]

    def pause_request(self) -> str | None:
        doc = self._meta.find_one({"_id": CONTROL_ID})
        return str(doc["requestId"]) if doc and doc.get("requestId") else None

    def request_pause(self, request_id: str) -> bool:
        """False if another rebuild holds the pause already."""
        result = self._meta.update_one(
            {"_id": CONTROL_ID, "requestId": None},
            {"$set": {"requestId": request_id, "requestedAt": datetime.now(UTC)}},
            upsert=False,
        )
        if result.matched_count:
            return True
        if self._meta.find_one({"_id": CONTROL_ID}) is None:
            try:
                self._meta.insert_one(
                    {"_id": CONTROL_ID, "requestId": request_id, "requestedAt": datetime.now(UTC)}
                )
                return True
            except PyMongoError:
                return False
        return False

    def release(self, request_id: str) -> None:
        self._meta.update_one(
            {"_id": CONTROL_ID, "requestId": request_id}, {"$set": {"requestId": None}}
        )

    def heartbeat(self, member_id: str, paused_for: str | None) -> None:
        self._members.update_one(
            {"_id": member_id},
            {
                "$set": {
                    "lastSeen": datetime.now(UTC),
                    "pausedFor": paused_for,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                }
            },
            upsert=True,
        )

    def leave(self, member_id: str) -> None:
        self._members.delete_one({"_id": member_id})

    def live_members(self) -> list[dict[str, Any]]:
        since = datetime.now(UTC) - timedelta(seconds=LIVE_WITHIN_SECONDS)
        return list(self._members.find({"lastSeen": {"$gte": since}}))

    def not_yet_paused(self, request_id: str) -> list[str]:
        return [str(m["_id"]) for m in self.live_members() if m.get("pausedFor") != request_id]


class HandoverGate:
    """The running projector's side: heartbeat, and hold still while a rebuild asks."""

    def __init__(self, control: HandoverControl, stop: threading.Event) -> None:
        self._control = control
        self._stop = stop
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._last_beat = 0.0

    def before_batch(self) -> None:
        """Called between batches; returns when no rebuild asks to pause (or on stop)."""
        try:
            request = self._control.pause_request()
            if request is None:
                self._beat(None)
                return
            log.info("rebuild asked to pause; holding between batches", extra={"rebuild": request})
            while request is not None and not self._stop.is_set():
                self._beat(request, force=True)
                self._stop.wait(0.1)
                request = self._control.pause_request()
            log.info("pause released; continuing in the active generation")
        except PyMongoError as exc:
            # the store is down: the batch will wait in the store retry anyway
            log.warning("handover check failed", extra={"error": str(exc)})

    def _beat(self, paused_for: str | None, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_beat >= HEARTBEAT_SECONDS:
            self._control.heartbeat(self.member_id, paused_for)
            self._last_beat = now

    def leave(self) -> None:
        with contextlib.suppress(PyMongoError):
            self._control.leave(self.member_id)
