"""Reading your own write: wait until the projector has processed a command's log position.

One watcher per process reads the projector's positions (one small query for
all partitions) only while some request is waiting, and wakes every waiter
whose position has been reached: no per-request polling of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi.concurrency import run_in_threadpool

from query_api.repository import ReadRepository, StoreUnavailable
from servicekit.consistency import ConsistencyToken

log = logging.getLogger("query_api.consistency")


class ProjectionWatcher:
    def __init__(self, repository: ReadRepository, interval: float) -> None:
        self._repository = repository
        self._interval = interval
        self._known: dict[int, int] = {}
        self._waiters: list[tuple[ConsistencyToken, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _reached(self, token: ConsistencyToken) -> bool:
        return self._known.get(token.partition, 0) > token.offset

    async def wait_for(self, token: ConsistencyToken, timeout: float) -> bool:
        """True once the command's position is processed; False when the bound passed first."""
        if self._reached(token):
            return True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (token, future)
        self._waiters.append(entry)
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def _run(self) -> None:
        while True:
            if not self._waiters:
                self._wake.clear()
                await self._wake.wait()
            try:
                self._known = await run_in_threadpool(self._repository.positions)
            except StoreUnavailable as exc:
                log.warning("cannot read projector positions", extra={"error": str(exc)})
            for token, future in list(self._waiters):
                if self._reached(token) and not future.done():
                    future.set_result(None)
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
