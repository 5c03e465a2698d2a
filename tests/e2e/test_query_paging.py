"""Listing through the real processes: 1,000 items written through the command API.

Paging (limit 37) while another thread keeps patching the items never skips or
repeats one; afterwards every filter and combination returns exactly the items
the writers made match (read with the last writer's tokens, no polling), and
exactly the items, in the same order, of a brute-force fold of the command log.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from domain.commands import Priority, Status
from tests.conftest import RunningSystem
from tests.support.auth import caller_headers
from tests.support.projector_log import read_log
from tests.support.projector_model import fold_log
from tests.support.query_traffic import Model, Updater, latest_tokens, send_all

pytestmark = pytest.mark.e2e
ITEMS = 1000
ASSIGNEES = ["ana", "bo", "chen", None]
TAGS = ["ops", "docs", "infra", "ui"]
# Statuses reached from "open" by one allowed transition
FINAL_STATUS = ["open", "open", "in_progress", "done", "cancelled"]


def creation(n: int) -> dict[str, Any]:
    return {
        "title": f"item {n}",
        "assignee": ASSIGNEES[n % 4],
        "priority": str(list(Priority)[(n // 4) % 4]),
        "tags": [t for i, t in enumerate(TAGS) if (n >> i) & 1],
    }


def write_items(system: RunningSystem) -> tuple[Model, list[str]]:
    bodies = [creation(n) for n in range(ITEMS)]
    created = send_all(system.command_url, [("POST", "/action-items", b) for b in bodies])
    model = Model()
    for n, (body, answer) in enumerate(zip(bodies, created, strict=True)):
        model.items[answer["actionItemId"]] = {
            **body,
            "status": FINAL_STATUS[n % 5],
            "version": 1,
        }
    patches = [
        ("PATCH", f"/action-items/{item_id}", {"status": state["status"]})
        for item_id, state in model.items.items()
        if state["status"] != "open"
    ]
    patched = send_all(system.command_url, patches)
    for _, path, _ in patches:
        model.items[path.rsplit("/", 1)[1]]["version"] = 2
    return model, latest_tokens(created + patched)


def wait_for(http: httpx.Client, system: RunningSystem, tokens: list[str]) -> None:
    for token in tokens:
        response = http.get(
            f"{system.query_url}/action-items",
            params={"limit": 1},
            headers={"Consistency-Token": token},
        )
        assert response.status_code == 200, response.text


def page_through(
    http: httpx.Client, system: RunningSystem, limit: int, between_pages: Any = None, **filters: str
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    for _ in range(ITEMS + 1):
        response = http.get(f"{system.query_url}/action-items", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen.extend(page["items"])
        if page["nextCursor"] is None:
            return seen
        params["cursor"] = page["nextCursor"]
        if between_pages is not None:
            between_pages()
    raise AssertionError("paging did not end")


def assert_exactly_once_in_order(items: list[dict[str, Any]], expected: set[str]) -> None:
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)), "an item was repeated"
    assert set(ids) == expected, f"skipped {len(expected - set(ids))}, extra {set(ids) - expected}"
    keys = [(i["createdAt"], i["id"]) for i in items]
    assert keys == sorted(keys)


def test_paging_while_items_change_then_every_filter_is_exact(system: RunningSystem) -> None:
    model, tokens = write_items(system)
    with httpx.Client(headers=caller_headers("anonymous"), timeout=30) as http:
        wait_for(http, system, tokens)
        initial_versions = {i: s["version"] for i, s in model.items.items()}

        with Updater(system.command_url, model) as updater:
            updater.wait_for_sent(20)
            pauses: list[int] = []

            def let_writers_write() -> None:
                pauses.append(updater.sent)
                updater.wait_for_sent(updater.sent + 5)

            everything = page_through(http, system, 37, let_writers_write)
            by_tag = page_through(http, system, 37, let_writers_write, tag="docs")
            last = updater.last_accepted
        assert last is not None
        sent = updater.sent

        assert_exactly_once_in_order(everything, set(model.items))
        assert_exactly_once_in_order(by_tag, model.matching(tag="docs"))
        changed = [i for i in everything + by_tag if i["version"] > initial_versions[i["id"]]]
        assert changed, "the pages saw none of the concurrent updates"
        assert len(pauses) >= 2 * (ITEMS // 2 // 37) and sent >= 20 + 5 * len(pauses)

        wait_for(http, system, latest_tokens([last]))
        check_every_filter(http, system, model)


def folded_states(system: RunningSystem) -> list[Any]:
    """Every item as a brute-force fold of the whole command log by the domain alone
    (no projector, no store) makes it."""
    settings = system.stack.settings
    log = read_log(
        settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
    )
    return [stored.state for stored in fold_log(log).items.values()]


def folded_order(states: list[Any], filters: dict[str, str]) -> list[str]:
    """The ids a list with ``filters`` must return, in (createdAt, id) order."""

    def matches(state: Any) -> bool:
        return all(
            value in state.tags if name == "tag" else str(getattr(state, name)) == value
            for name, value in filters.items()
        )

    return [s.id for s in sorted(filter(matches, states), key=lambda s: (s.created_at, s.id))]


def check_every_filter(http: httpx.Client, system: RunningSystem, model: Model) -> None:
    values: dict[str, list[str]] = {
        "status": [str(s) for s in Status],
        "assignee": [a for a in ASSIGNEES if a],
        "priority": [str(p) for p in Priority],
        "tag": TAGS,
    }
    cases: list[dict[str, str]] = [{name: v} for name, vs in values.items() for v in vs]
    cases += [{a: values[a][0], b: values[b][-1]} for a, b in itertools.combinations(values, 2)]
    cases += [{"status": "open", "assignee": "ana", "priority": "low", "tag": "ops"}]
    cases += [{"assignee": "nobody"}]
    folded = folded_states(system)
    for filters in [{}, *cases]:
        got = page_through(http, system, 200, **filters)
        assert_exactly_once_in_order(got, model.matching(**filters))
        assert [i["id"] for i in got] == folded_order(folded, filters), filters
        for item in got:
            state = model.items[item["id"]]
            assert (item["status"], item["priority"], item["version"]) == (
                state["status"],
                state["priority"],
                state["version"],
            ), filters
