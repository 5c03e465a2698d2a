"""Reading your own write: wait until the projector has processed a command's log position.

The store has no change streams (FerretDB), so positions are polled, but only
by one watcher per process and only while some request is waiting: one small
query (all partitions at once) per interval, however many requests wait, and
none at all when nobody waits. Each poll wakes every waiter whose position has
been reached. A position is reached when the projector's next offset for the
partition is past the command's offset; the projector stores that offset after
the command's effect, so a reached token sees the effect.

Except for a parked item (projector/parking.py): the store refused its write,
its commands wait in the store, and the partition's position moves past them as
the other items go on. So once the position is reached, one small indexed query
asks whether an item (the one read, or any of the partition's for a list) is
parked at or before the token's offset; while one is, the token is not
satisfied: the query is repeated every PARKED_RECHECK_SECONDS until the same
bound, and past it the read gets the same 503 as a position not reached (whose
detail then says the command waits because the store refused its item's write;
a wait that ends with the position not reached asks the same once, to say so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from enum import Enum

from fastapi.concurrency import run_in_threadpool

from query_api.metrics import CONSISTENCY_WAITS, POSITION_POLLS
from query_api.repository import ReadRepository, StoreUnavailable
from servicekit.consistency import ConsistencyToken

log = logging.getLogger("query_api.consistency")
WARN_EVERY_SECONDS = 5.0
# While a token's command (or one before it) is parked: how often to ask again. A release
# (`projector release ITEM`, or the projector's timed retry) takes about a second to act.
PARKED_RECHECK_SECONDS = 0.25


class Wait(Enum):
    """How a wait on a token ended."""

    SATISFIED = "satisfied"  # the position is reached and nothing it covers is parked
    NOT_REACHED = "not_reached"  # the bound passed before the projector got there
    PARKED = "parked"  # past the bound, a command it covers is parked


class ProjectionWatcher:
    def __init__(self, repository: ReadRepository, interval: float) -> None:
        self._repository = repository
        self._interval = interval
        self._known: dict[int, int] = {}
        self._waiters: list[tuple[ConsistencyToken, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    def _reached(self, token: ConsistencyToken) -> bool:
        return self._known.get(token.partition, 0) > token.offset

    async def wait_for(
        self, token: ConsistencyToken, timeout: float, item_id: str | None = None
    ) -> Wait:
        """SATISFIED once the token's position is processed and no item (``item_id`` when
        given, else any of the partition's) is parked at or before it; else, past
        ``timeout``, why not. A store outage raises ``StoreUnavailable``."""
        deadline = time.monotonic() + timeout
        outcome = await self._position(token, timeout)
        if outcome == "timeout":
            # Say why when we can: the position also stays before a parked command that no
            # later command of its partition has passed. One query, at the bound only.
            with contextlib.suppress(StoreUnavailable):
                if await self._parked(token, item_id):
                    CONSISTENCY_WAITS.labels("parked").inc()
                    return Wait.PARKED
            CONSISTENCY_WAITS.labels(outcome).inc()
            return Wait.NOT_REACHED
        while await self._parked(token, item_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                CONSISTENCY_WAITS.labels("parked").inc()
                return Wait.PARKED
            await asyncio.sleep(min(PARKED_RECHECK_SECONDS, remaining))
        CONSISTENCY_WAITS.labels(outcome).inc()
        return Wait.SATISFIED

    async def _parked(self, token: ConsistencyToken, item_id: str | None) -> bool:
        return await run_in_threadpool(
            self._repository.parked_at_or_before, token.partition, token.offset, item_id
        )

    async def _position(self, token: ConsistencyToken, timeout: float) -> str:
        """'already' or 'reached' once the projector is past the token's offset, else 'timeout'."""
        if self._reached(token):
            return "already"
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (token, future)
        self._waiters.append(entry)
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout)
            return "reached"
        except TimeoutError:
            return "timeout"
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _pending(self) -> bool:
        return any(not future.done() for _, future in self._waiters)

    async def _run(self) -> None:
        while True:
            if not self._pending():
                self._wake.clear()
                await self._wake.wait()
            await self._poll()
            for token, future in list(self._waiters):
                if self._reached(token) and not future.done():
                    future.set_result(None)
            if self._pending():
                await asyncio.sleep(self._interval)

    async def _poll(self) -> None:
        POSITION_POLLS.inc()
        try:
            self._known = await run_in_threadpool(self._repository.positions)
        except StoreUnavailable as exc:
            now = time.monotonic()
            if now - self._last_warning >= WARN_EVERY_SECONDS:
                self._last_warning = now
                log.warning(
                    "cannot read projector positions; token waits will time out (503)",
                    extra={"error": str(exc), "waiting": len(self._waiters)},
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
