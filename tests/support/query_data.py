"""Read-model documents for query API tests and benchmarks, shaped exactly as the projector writes.

Documents come from the projector's own translation (``projector.documents``)
over domain values, so a change of the stored shape shows up here too.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient, monitoring

from domain.commands import Priority, Status
from domain.planning import StoredItem
from domain.rules import ActionItem, Code, ExceptionEntry, timestamp
from projector.documents import item_doc
from servicekit.read_model import ReadModel, active_read_model
from servicekit.store_types import StoreClient, StoreDatabase

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
STATUSES = [str(s) for s in Status]
PRIORITIES = [str(p) for p in Priority]
ASSIGNEES = ["ana", "bo", "chen", None]
TAGS = ["ops", "docs", "infra", "ui", "db"]


def item(
    *,
    item_id: str | None = None,
    title: str = "an item",
    created: datetime = T0,
    status: str = "open",
    priority: str = "normal",
    assignee: str | None = None,
    tags: Iterable[str] = (),
    version: int = 1,
    description: str | None = None,
    exceptions: int = 0,
) -> ActionItem:
    item_id = item_id or str(uuid.uuid4())
    at = timestamp(created)
    return ActionItem(
        id=item_id,
        title=title,
        description=description,
        assignee=assignee,
        priority=Priority(priority),
        due_date="2026-12-31",
        tags=tuple(tags),
        status=Status(status),
        version=version,
        created_at=at,
        updated_at=at,
        exceptions=tuple(
            ExceptionEntry(str(uuid.uuid4()), Code.INVALID_TRANSITION, "no", at, 0, n)
            for n in range(exceptions)
        ),
        exception_count=exceptions,
    )


def document(state: ActionItem, offset: int = 0) -> dict[str, Any]:
    """The stored document of ``state``, with the internal fields the API must never expose."""
    return item_doc(StoredItem(state, partition=0, last_offset=offset))


def varied_items(count: int, seed: int = 7, same_instant_every: int = 5) -> list[ActionItem]:
    """Items over every filter value; runs of ``same_instant_every`` share one createdAt."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        out.append(
            item(
                title=f"item {n}",
                created=T0 + timedelta(milliseconds=n // same_instant_every),
                status=rng.choice(STATUSES),
                priority=rng.choice(PRIORITIES),
                assignee=rng.choice(ASSIGNEES),
                tags=rng.sample(TAGS, rng.randint(0, 3)),
            )
        )
    return out


def seed(db: StoreDatabase, states: Iterable[ActionItem], chunk: int = 1000) -> ReadModel:
    """Insert items into the active generation (as the projector would have)."""
    model = active_read_model(db)
    docs = [document(s) for s in states]
    for start in range(0, len(docs), chunk):
        model.items.insert_many(docs[start : start + chunk], ordered=False)
    return model


def order_key(doc: dict[str, Any]) -> tuple[str, str]:
    return (doc["createdAt"], doc["id"] if "id" in doc else doc["_id"])


def expected_ids(states: Iterable[ActionItem], **filters: str) -> list[str]:
    """Ids matching the filters (exact match; ``tag`` means "has this tag"), in list order."""

    def matches(s: ActionItem) -> bool:
        return all(
            (value in s.tags) if name == "tag" else str(getattr(s, name)) == value
            for name, value in filters.items()
        )

    chosen = sorted((s for s in states if matches(s)), key=lambda s: (s.created_at, s.id))
    return [s.id for s in chosen]


@dataclass
class Churn:
    """A thread that keeps replacing items in the store (title, status, priority, version)."""

    model: ReadModel
    states: list[ActionItem]
    writes: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_for_writes(self, at_least: int, timeout: float = 20) -> None:
        with self._progress:
            if not self._progress.wait_for(lambda: self.writes >= at_least, timeout):
                raise TimeoutError(f"churn made {self.writes} writes, wanted {at_least}")

    def _run(self) -> None:
        rng = random.Random(11)
        versions = {s.id: s.version for s in self.states}
        for n in itertools.count():
            if self._stop.is_set():
                return
            state = rng.choice(self.states)
            versions[state.id] += 1
            changed = replace(
                state,
                title=f"renamed {n}",
                status=Status(rng.choice(STATUSES)),
                priority=Priority(rng.choice(PRIORITIES)),
                version=versions[state.id],
            )
            self.model.items.replace_one({"_id": state.id}, document(changed, n))
            with self._progress:
                self.writes += 1
                self._progress.notify_all()


class CommandLog(monitoring.CommandListener):
    """Every command a pymongo client sends to the store, to prove what reached it."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def clear(self) -> None:
        with self._lock:
            self.commands.clear()

    def reads(self) -> list[dict[str, Any]]:
        """find/aggregate commands on read-model collections (not the generation pointer)."""
        with self._lock:
            return [
                c
                for name, c in self.commands
                if name in ("find", "aggregate", "count") and c.get(name) != "read_model_meta"
            ]


def listening_client(uri: str, log: CommandLog) -> StoreClient:
    return MongoClient(uri, serverSelectionTimeoutMS=5000, event_listeners=[log])


def plan_nodes(explain: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every plan node of an explain() answer: PostgreSQL plan nodes (FerretDB/DocumentDB) or
    MongoDB query-planner stages."""
    stack: list[Any] = [explain.get("queryPlanner", explain)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "Node Type" in node or "stage" in node:
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def plan_summary(explain: dict[str, Any]) -> tuple[set[str], bool]:
    """(index names the winning plan scans, whether it scans the whole collection)."""
    planner = explain.get("queryPlanner", explain)
    winning = planner.get("winningPlan", planner)
    indexes: set[str] = set()
    full_scan = False
    for node in plan_nodes({"queryPlanner": winning}):
        name = node.get("Index Name") or node.get("indexName")
        if name:
            indexes.add(str(name))
        if node.get("Node Type") == "Seq Scan" or node.get("stage") == "COLLSCAN":
            full_scan = True
    return indexes, full_scan
