"""What the query API's handlers share: the repository, the position watcher and the bounds.

It turns the store's outage and a command not processed within the bound into
the problems the contract names (503 with Retry-After), and a malformed token
into a 400, so the routes stay a few lines each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from query_api.consistency import ProjectionWatcher, Wait
from query_api.item_reads import AsyncItemReads
from query_api.repository import ReadRepository, StoreUnavailable
from query_api.settings import QueryApiSettings
from servicekit.consistency import BadToken, ConsistencyToken
from servicekit.ops_routes import not_ready
from servicekit.problems import Problem

log = logging.getLogger("query_api")
T = TypeVar("T")
# Why a token is not satisfied when a command it covers is parked: one of the item read
# (True), or of an item of the token's partition (False). No store text here.
PARKED_REASON = {
    True: ": the store refused a write of this ActionItem, so its commands from that one on "
    "wait, in order, until the projector can apply them (it retries; an operator may have "
    "to remove the cause)",
    False: ": the store refused a write of an ActionItem (its own, or one changed before "
    "it), so that ActionItem's commands wait, in order, until the projector can apply them "
    "(it retries; an operator may have to remove the cause)",
}


class QueryService:
    def __init__(self, settings: QueryApiSettings, repository: ReadRepository) -> None:
        self.settings = settings
        self.repository = repository
        self.watcher: ProjectionWatcher | None = None
        # get by id on the asyncio client, once the app's lifespan has built it
        self.items: AsyncItemReads | None = None

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; a store outage becomes a 503 with Retry-After."""
        try:
            return await run_in_threadpool(fn, *args)
        except StoreUnavailable as exc:
            raise self._store_down(exc) from None

    async def read_item(self, item_id: str) -> dict[str, Any] | None:
        """The public item or None; on the asyncio client when there is one (no thread hop)."""
        if self.items is None:
            return await self.read(self.repository.get_item, item_id)
        try:
            return await self.items.get_item(item_id)
        except StoreUnavailable as exc:
            raise self._store_down(exc) from None

    def _store_down(self, exc: StoreUnavailable) -> Problem:
        # The driver's text names hosts and topology: it goes to the log, not to the client.
        log.warning("read failed: store unreachable", extra={"error": str(exc)})
        return Problem(
            503,
            "Service Unavailable",
            "the read model store is unreachable; nothing was read, retry later",
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    async def wait_for(self, token_text: str | None, item_id: str | None = None) -> None:
        """Return once the token's command is processed and its effect readable: for
        ``item_id``, no command of that item up to the token is parked; without it, none
        of the partition's. 400 if malformed, 503 past the bound."""
        if token_text is None:
            return
        try:
            token = ConsistencyToken.decode(token_text)
        except BadToken:
            raise Problem(
                400,
                "Bad Request",
                "Consistency-Token is malformed; send the consistencyToken of a 202 unchanged",
                errors=[{"field": "Consistency-Token", "message": "malformed"}],
            ) from None
        assert self.watcher is not None, "the watcher starts with the app"
        bound = self.settings.consistency_wait_seconds
        try:
            outcome = await self.watcher.wait_for(token, bound, item_id)
        except StoreUnavailable as exc:
            raise self._store_down(exc) from None
        if outcome is Wait.SATISFIED:
            return
        if outcome is Wait.PARKED:
            log.info(
                "token read answered 503: a command it covers is parked",
                extra={"commandId": token.command_id, "actionItemId": item_id},
            )
        raise Problem(
            503,
            "Service Unavailable",
            f"command {token.command_id} is not processed yet (waited {bound:g} s)"
            f"{PARKED_REASON[item_id is not None] if outcome is Wait.PARKED else ''}; "
            "retry later with the same Consistency-Token",
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
            commandId=token.command_id,
        )

    async def ready(self) -> dict[str, str]:
        """/readyz: ready when the store answers, else 503 naming it."""
        try:
            await run_in_threadpool(self.repository.ping)
        except StoreUnavailable as exc:
            log.warning("not ready: store unreachable", extra={"error": str(exc)})
            raise not_ready(["store"], "store: unreachable", retry_after=5) from None
        return {"status": "ready"}
