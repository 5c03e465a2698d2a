"""Which command first used an Idempotency-Key: decided at acceptance, recorded in the store.

The projector can order the uses of a key only within one partition (a
partition's log order); a key reused by the same caller on an item of another
partition has no order there that a rebuild would see alike. So the command API
asks this registry before producing, and writes the answer into the command
(schema v4 ``keyOwner``): the live model and every replay read the same verdict
from the log.

One document per key in ``idempotency_key_owners`` of the service database
(beside the read model's generations, never part of one: a rebuild must not
drop what acceptance decided): ``_id`` = the key hash (caller and key,
``domain.identity.key_hash``), ``commandId``, ``actionItemId``, ``acceptedAt``.
A claim is an insert; a duplicate ``_id`` means the key has an owner, read
back. The unique ``_id`` makes the first insert win even under concurrent
claims (FerretDB's upsert with ``$setOnInsert`` does not: under 8 racing
threads several upserts reported an insert and the stored owner was
overwritten, see docs/command-api.md). A keyed retry of the same request has
the same commandId, so it finds itself as the owner.

Every call is bounded (``KEY_REGISTRY_TIMEOUT_MS``); past the bound, or with the
store down, ``KeyRegistryUnavailable``: the caller accepts the command without
a verdict (fail open, command_api/service.py). After such a failure the store
is not asked for ``PAUSE_AFTER_FAILURE_SECONDS`` (those claims fail open at
once), so an outage does not add the whole bound to every keyed write.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from pymongo.errors import DuplicateKeyError, PyMongoError

from domain.commands import CommandEnvelope
from servicekit.store_client import store_client
from servicekit.store_types import StoreClient, StoreCollection

COLLECTION = "idempotency_key_owners"
PAUSE_AFTER_FAILURE_SECONDS = 1.0


class KeyRegistryUnavailable(Exception):
    """The registry did not answer within its bound; nothing is known about the key."""


class KeyRegistry:
    """Claims a key for a command, or names the command that claimed it first.

    Built without I/O; ``start()`` (the app's lifespan) makes its store client, which
    connects in the background. Before ``start()`` and after ``close()`` every claim is
    ``KeyRegistryUnavailable``.
    """

    def __init__(self, uri: str, database: str, timeout_ms: int, threads: int = 8) -> None:
        self.uri, self.database = uri, database
        self.timeout_ms = timeout_ms
        self.timeout = timeout_ms / 1000
        self.threads = threads
        self._client: StoreClient | None = None
        self._collection: StoreCollection | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._paused_until = 0.0

    @classmethod
    def connect(cls, uri: str, database: str, timeout_ms: int) -> KeyRegistry:
        """A started registry (tests and tools)."""
        registry = cls(uri, database, timeout_ms)
        registry.start()
        return registry

    def start(self) -> None:
        """Its own store client (bounded by the registry's timeout) and its own threads: a
        slow store must not take the threads other work runs on."""
        client = store_client(
            self.uri,
            app_name="command_api.key_registry",
            timeout_ms=self.timeout_ms,
            socket_timeout_ms=self.timeout_ms,
            operation_timeout_ms=self.timeout_ms,
            max_pool_size=16,
        )
        self._client, self._collection = client, client[self.database][COLLECTION]
        self._threads = ThreadPoolExecutor(self.threads, thread_name_prefix="key-registry")

    @property
    def collection(self) -> StoreCollection:
        if self._collection is None:
            raise KeyRegistryUnavailable("the key registry is not started")
        return self._collection

    async def owner(self, command: CommandEnvelope) -> str:
        """The commandId that owns ``command``'s key: its own when it is the first use (or a
        retry of it). ``KeyRegistryUnavailable`` when the store did not answer in time."""
        now = time.monotonic()
        if now < self._paused_until:
            raise KeyRegistryUnavailable("not asked: the store did not answer a moment ago")
        if self._threads is None:
            raise KeyRegistryUnavailable("the key registry is not started")
        loop = asyncio.get_running_loop()
        claim = loop.run_in_executor(self._threads, self.claim, command, now + self.timeout)
        try:
            return await asyncio.wait_for(claim, self.timeout)
        except TimeoutError:
            self._pause()
            raise KeyRegistryUnavailable(
                f"no answer within {int(self.timeout * 1000)} ms"
            ) from None
        except KeyRegistryUnavailable:
            self._pause()
            raise

    def _pause(self) -> None:
        self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS

    def claim(self, command: CommandEnvelope, deadline: float | None = None) -> str:
        """Blocking ``owner``. A claim still queued at ``deadline`` is not sent (its request
        has gone on without it, so a backlog behind a dead store drains at once)."""
        key = command.idempotency_key_hash
        if key is None:
            raise ValueError("a command without an Idempotency-Key has no key to claim")
        if deadline is not None and time.monotonic() >= deadline:
            raise KeyRegistryUnavailable("gave up before asking: waited for a thread")
        collection = self.collection
        try:
            try:
                collection.insert_one(
                    {
                        "_id": key,
                        "commandId": command.command_id,
                        "actionItemId": command.action_item_id,
                        "acceptedAt": command.accepted_at,
                    }
                )
                return command.command_id
            except DuplicateKeyError:
                found = collection.find_one({"_id": key}, {"commandId": 1})
        except PyMongoError as exc:
            raise KeyRegistryUnavailable(f"{type(exc).__name__}: {exc}") from None
        if found is None:  # claims are never removed; a store that lost one is not answering
            raise KeyRegistryUnavailable(f"key {key} refused as a duplicate but not found")
        return str(found["commandId"])

    def close(self) -> None:
        threads, client = self._threads, self._client
        self._threads = self._client = self._collection = None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
