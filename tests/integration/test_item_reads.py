"""Get by id on pymongo's asyncio client (query_api/item_reads.py), against the real store.

It must read what the synchronous repository reads, follow the active
generation the same way (a rebuild's swap included), and turn a store that
does not answer into StoreUnavailable (a 503 at the route), never a 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from query_api.item_reads import AsyncItemReads
from query_api.repository import ReadRepository
from servicekit.read_model import ReadModel, swap_active_generation
from servicekit.store_client import async_store_client
from servicekit.store_errors import StoreUnavailable
from servicekit.store_types import StoreClient
from tests.support.query_data import document, item, seed
from tests.support.services import free_port

CACHE_SECONDS = 0.3  # the repository's trust in the generation pointer


@pytest.fixture
def db_name(mongo: StoreClient) -> Iterator[str]:
    name = f"test_item_reads_{uuid.uuid4().hex[:10]}"
    yield name
    mongo.drop_database(name)


def test_the_asyncio_read_equals_the_repository_and_follows_a_generation_swap(
    mongodb_uri: str, mongo: StoreClient, db_name: str
) -> None:
    state = item(title="read me", tags=["a"], version=4, exceptions=2)
    seed(mongo[db_name], [state])
    repository = ReadRepository(mongo, db_name, CACHE_SECONDS)

    async def scenario() -> None:
        reads = AsyncItemReads(
            async_store_client(mongodb_uri, app_name="test", timeout_ms=5000), db_name, repository
        )
        try:
            assert repository.fresh_generation() is None  # nothing read yet
            assert await reads.get_item(state.id) == repository.get_item(state.id)
            assert repository.fresh_generation() == "g0"  # the next read needs no thread
            assert await reads.get_item(str(uuid.uuid4())) is None
            # a rebuild built g1 with a newer version of the item and swapped to it
            rebuilt = item(item_id=state.id, title="rebuilt", version=5)
            ReadModel(mongo[db_name], "g1").ensure_indexes()
            mongo[db_name][ReadModel.items_name("g1")].insert_one(document(rebuilt))
            swap_active_generation(mongo[db_name], "g1")
            time.sleep(CACHE_SECONDS + 0.1)
            found = await reads.get_item(state.id)
            assert found is not None and (found["title"], found["version"]) == ("rebuilt", 5)
            assert repository.fresh_generation() == "g1"
        finally:
            await reads.close()

    asyncio.run(scenario())


def test_a_store_that_does_not_answer_is_store_unavailable(
    mongo: StoreClient, db_name: str
) -> None:
    state = item(title="cached pointer")
    seed(mongo[db_name], [state])
    repository = ReadRepository(mongo, db_name, 60)
    repository.current()  # the pointer is cached: the read goes straight to the asyncio client
    nobody = f"mongodb://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        reads = AsyncItemReads(
            async_store_client(nobody, app_name="test", timeout_ms=300), db_name, repository
        )
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await reads.get_item(state.id)
            assert time.monotonic() - started < 5, "the store's timeout bounds the wait"
        finally:
            await reads.close()

    asyncio.run(scenario())
