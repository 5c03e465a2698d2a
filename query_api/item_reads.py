"""Get by id on pymongo's asyncio client: the read with no thread-pool hop.

Every other read goes through ``ReadRepository`` (synchronous pymongo, on the
thread pool). The most frequent one, ``GET /action-items/{id}``, is one
``find_one`` by ``_id``; handing it to a worker thread and back cost about as
much as the rest of the request (issue 18: a side-by-side FastAPI app served
944 such reads/s through the thread pool and 1,227/s on the asyncio client at
one connection, 1,412 against 2,355 at 16). The active generation still comes
from the repository's cache, so a rebuild's swap is seen the same way as by
every other read.
"""

from __future__ import annotations

from typing import Any

from fastapi.concurrency import run_in_threadpool
from pymongo.errors import PyMongoError

from query_api.repository import PUBLIC_ITEM_FIELDS, ReadRepository, public_item
from servicekit.read_model import ReadModel
from servicekit.store_errors import StoreUnavailable, translate
from servicekit.store_types import AsyncStoreClient


class AsyncItemReads:
    def __init__(self, client: AsyncStoreClient, database: str, repository: ReadRepository):
        self._client = client
        self._db = client[database]
        self._repository = repository

    async def get_item(self, item_id: str) -> dict[str, Any] | None:
        """The public item, or None; ``StoreUnavailable`` when the store cannot answer."""
        generation = self._repository.fresh_generation()
        if generation is None:
            # the pointer's cache ran out (or first read): the repository refreshes it
            # and ensures the generation's indexes, on a worker thread as ever
            generation = (await run_in_threadpool(self._repository.current)).generation
        items = self._db[ReadModel.items_name(generation)]
        try:
            doc = await items.find_one({"_id": item_id}, PUBLIC_ITEM_FIELDS)
        except PyMongoError as exc:
            # as the repository's reads: a reader can do nothing else with a refusal
            raise StoreUnavailable(str(translate(exc))) from exc
        return public_item(doc) if doc else None

    async def close(self) -> None:
        await self._client.close()
