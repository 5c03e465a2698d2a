"""Writers' traffic for query API e2e tests: many commands through the real command API."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from domain.commands import Priority, Status
from domain.rules import ALLOWED_TRANSITIONS
from servicekit.consistency import ConsistencyToken
from tests.support.auth import caller_headers


async def _send_all(
    base_url: str, requests: Sequence[tuple[str, str, dict[str, Any]]], concurrency: int
) -> list[dict[str, Any]]:
    limiter = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        headers=caller_headers("anonymous"), base_url=base_url, timeout=30
    ) as client:

        async def one(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with limiter:
                response = await client.request(method, path, json=body)
            assert response.status_code == 202, response.text
            return dict(response.json())

        return list(await asyncio.gather(*(one(m, p, b) for m, p, b in requests)))


def send_all(
    base_url: str, requests: Sequence[tuple[str, str, dict[str, Any]]], concurrency: int = 64
) -> list[dict[str, Any]]:
    """Send commands concurrently; every one must be accepted (202). Answers in request order."""
    return asyncio.run(_send_all(base_url, requests, concurrency))


def latest_tokens(accepted: Sequence[dict[str, Any]]) -> list[str]:
    """One token per partition: the highest position written; reading past all of them is
    reading past every command in ``accepted``."""
    best: dict[int, ConsistencyToken] = {}
    for answer in accepted:
        t = ConsistencyToken.decode(answer["consistencyToken"])
        if t.partition not in best or t.offset > best[t.partition].offset:
            best[t.partition] = t
    return [t.encode() for t in best.values()]


@dataclass
class Model:
    """What the writers made each item into (status, priority, version...), for expectations."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    def matching(self, **filters: str) -> set[str]:
        def hit(state: dict[str, Any]) -> bool:
            return all(
                value in state["tags"] if name == "tag" else state[name] == value
                for name, value in filters.items()
            )

        return {item_id for item_id, state in self.items.items() if hit(state)}


class Updater:
    """A thread that keeps patching items (title, status, priority) through the command API.

    Status changes follow the allowed transitions, so every patch is applied and
    the model stays exact; patches of one item are sent one after another.
    """

    def __init__(self, command_url: str, model: Model, seed: int = 5) -> None:
        self._url = command_url
        self._model = model
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self.sent = 0
        self.last_accepted: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="updater", daemon=True)

    def __enter__(self) -> Updater:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error

    def wait_for_sent(self, at_least: int, timeout: float = 30) -> None:
        with self._progress:
            done = self._progress.wait_for(
                lambda: self.sent >= at_least or self.error is not None, timeout
            )
        if self.error is not None:
            raise self.error
        if not done:
            raise TimeoutError(f"updater sent {self.sent} patches, wanted {at_least}")

    def _run(self) -> None:
        ids = sorted(self._model.items)
        try:
            with httpx.Client(
                headers=caller_headers("anonymous"), base_url=self._url, timeout=30
            ) as client:
                while not self._stop.is_set():
                    self._patch_one(client, self._rng.choice(ids))
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            with self._progress:
                self._progress.notify_all()

    def _patch_one(self, client: httpx.Client, item_id: str) -> None:
        state = self._model.items[item_id]
        status = self._rng.choice(sorted(ALLOWED_TRANSITIONS[Status(state["status"])]))
        body = {
            "title": f"renamed {self.sent}",
            "status": str(status),
            "priority": str(self._rng.choice(list(Priority))),
        }
        response = client.patch(f"/action-items/{item_id}", json=body)
        if response.status_code != 202:
            raise AssertionError(f"patch not accepted: {response.status_code} {response.text}")
        state.update(body, version=state["version"] + 1)
        with self._progress:
            self.sent += 1
            self.last_accepted = dict(response.json())
            self._progress.notify_all()
