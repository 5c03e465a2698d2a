"""Reading your own write: wait until the projector has processed a command's log position.

The store has no change streams (FerretDB), so positions are polled, but only
by one watcher per process and only while some request is waiting: one small
query (all partitions at once) per interval, however many requests wait, and
none at all when nobody waits. Each poll wakes every waiter whose position has
been reached. A position is reached when the projector's next offset for the
partition is past the command's offset; the projector stores that offset after
the command's effect, so a reached token always sees the effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi.concurrency import run_in_threadpool

from query_api.metrics import CONSISTENCY_WAITS, POSITION_POLLS
from query_api.repository import ReadRepository, StoreUnavailable
from servicekit.consistency import ConsistencyToken

log = logging.getLogger("query_api.consistency")
WARN_EVERY_SECONDS = 5.0


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

    async def wait_for(self, token: ConsistencyToken, timeout: float) -> bool:
        """True once the command's position is processed; False when the bound passed first."""
        if self._reached(token):
            CONSISTENCY_WAITS.labels("already").inc()
            return True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (token, future)
        self._waiters.append(entry)
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout)
            CONSISTENCY_WAITS.labels("reached").inc()
            return True
        except TimeoutError:
            CONSISTENCY_WAITS.labels("timeout").inc()
            return False
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
