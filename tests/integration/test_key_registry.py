"""The Idempotency-Key registry (command_api/key_registry.py) against the real store.

First use wins, a retry of the same command finds itself, concurrent claims of one
key from many threads leave exactly one owner that every claimant is told, and a
store that cannot be reached is KeyRegistryUnavailable, and not asked again for a moment.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from command_api.key_registry import (
    COLLECTION,
    PAUSE_AFTER_FAILURE_SECONDS,
    KeyRegistry,
    KeyRegistryUnavailable,
)
from domain.commands import CommandEnvelope
from servicekit.store_types import StoreClient
from tests.support.services import free_port
from tests.unit.builders import update


@pytest.fixture
def registry(mongodb_uri: str, mongo: StoreClient) -> Iterator[KeyRegistry]:
    name = f"keys_{uuid.uuid4().hex[:8]}"
    keys = KeyRegistry.connect(mongodb_uri, name, timeout_ms=2_000)
    yield keys
    keys.close()
    mongo.drop_database(name)


def command(key: str, item: str | None = None) -> CommandEnvelope:
    return update(item or str(uuid.uuid4()), title="t", key=key, command_id=str(uuid.uuid4()))


def test_the_first_use_owns_the_key_and_a_retry_finds_itself(registry: KeyRegistry) -> None:
    first, other = command("k-1"), command("k-1")
    assert registry.claim(first) == first.command_id
    retry = replace(first, correlation_id="another attempt")  # same commandId
    assert registry.claim(retry) == first.command_id
    assert registry.claim(other) == first.command_id  # another item, same caller's key
    assert registry.claim(command("k-2")) != first.command_id  # another key: its own owner
    stored = registry.collection.find_one({"_id": "k-1"})
    assert stored is not None
    assert registry.collection.name == COLLECTION
    assert (stored["commandId"], stored["actionItemId"]) == (
        first.command_id,
        first.action_item_id,
    )
    assert registry.collection.count_documents({}) == 2


def test_the_async_claim_answers_the_same(registry: KeyRegistry) -> None:
    first, other = command("k-a"), command("k-a")

    async def both() -> tuple[str, str]:
        return await registry.owner(first), await registry.owner(other)

    assert asyncio.run(both()) == (first.command_id, first.command_id)


def claim_at_once(
    registry: KeyRegistry, claimants: list[CommandEnvelope]
) -> tuple[dict[str, str], list[BaseException]]:
    """Each claimant's answer (by commandId), every thread released by one barrier."""
    answers: dict[str, str] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(len(claimants))

    def claim(c: CommandEnvelope) -> None:
        start.wait()
        try:
            answers[c.command_id] = registry.claim(c)
        except BaseException as exc:  # collected, asserted by the caller with the key
            failures.append(exc)

    threads = [threading.Thread(target=claim, args=(c,)) for c in claimants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers, failures


def test_concurrent_claims_of_one_key_leave_exactly_one_owner(registry: KeyRegistry) -> None:
    """16 threads claim each of 30 keys at once (different commands): one insert wins,
    and every thread is told that same owner, the one stored."""
    for round_ in range(30):
        key = f"race-{round_}"
        answers, failures = claim_at_once(registry, [command(key) for _ in range(16)])
        assert failures == [], (key, failures)
        stored = registry.collection.find_one({"_id": key})
        assert stored is not None
        owners = set(answers.values())
        assert owners == {stored["commandId"]}, (key, owners, stored)
        winners = [cid for cid, owner in answers.items() if owner == cid]
        assert winners == [stored["commandId"]], key


def test_an_unreachable_store_is_unavailable_then_not_asked_for_a_moment() -> None:
    """Unavailable (not a hang, not another error); the claims right after a failure are not
    sent at all (fail open at once), and after the pause the store is asked again."""
    port = free_port()  # nothing listens there
    keys = KeyRegistry.connect(f"mongodb://127.0.0.1:{port}", "nowhere", timeout_ms=300)
    try:
        with pytest.raises(KeyRegistryUnavailable, match="ServerSelectionTimeoutError"):
            keys.claim(command("k-down"))

        def owner() -> str:
            with pytest.raises(KeyRegistryUnavailable) as raised:
                asyncio.run(keys.owner(command("k-down")))
            return str(raised.value)

        assert "not asked" not in owner()  # asked, and failed: the pause starts
        assert "not asked" in owner()
        time.sleep(PAUSE_AFTER_FAILURE_SECONDS + 0.1)
        assert "not asked" not in owner()
    finally:
        keys.close()


def test_a_registry_not_started_or_closed_is_unavailable(mongodb_uri: str) -> None:
    """Built without I/O (the app builds it before its lifespan starts it)."""
    keys = KeyRegistry(mongodb_uri, "never", timeout_ms=300)
    with pytest.raises(KeyRegistryUnavailable, match="not started"):
        asyncio.run(keys.owner(command("k-idle")))
    keys.start()
    keys.close()
    with pytest.raises(KeyRegistryUnavailable, match="not started"):
        keys.claim(command("k-idle"))
