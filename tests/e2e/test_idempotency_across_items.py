"""An Idempotency-Key reused by one caller on another item (issue 16), through the processes.

The command API claims every key in its registry (command_api/key_registry.py)
before it produces the command, and writes the verdict into the command (schema
v4 ``keyOwner``) when another command owns the key. The projector rejects such a
command with IDEMPOTENCY_KEY_REUSED naming the owner, on any item of any
partition: the verdict is on the log, so the live model, the reference fold and a
rebuild decide alike. Without a verdict (the registry did not answer: fail open)
the per-partition rule still applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from command_api.key_registry import COLLECTION as KEY_REGISTRY
from domain.identity import key_hash
from schemas.partitioning import partition_for
from servicekit.read_model import active_generation
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem, Stack
from tests.e2e.test_rebuild import result_of, run_rebuild
from tests.support.auth import caller_headers
from tests.support.command_api import running_command_api
from tests.support.projector_log import read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.rebuild_oracle import snapshot, wait_until_projected
from tests.support.services import free_port


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_a_key_reused_on_another_item_of_any_partition_is_rejected(
    system: RunningSystem, mongo: StoreClient
) -> None:
    settings = system.stack.settings
    n = settings.commands_partitions
    commands = httpx.Client(headers=caller_headers("kim"), base_url=system.command_url, timeout=10)
    queries = httpx.Client(headers=caller_headers("kim"), base_url=system.query_url, timeout=10)
    by_partition: dict[int, list[str]] = {}
    while not any(len(v) >= 2 for v in by_partition.values()) or len(by_partition) < 2:
        item = accepted(commands.post("/action-items", json={"title": "t"}))["actionItemId"]
        by_partition.setdefault(partition_for(item, n), []).append(item)
    same = next(v for v in by_partition.values() if len(v) >= 2)
    first, neighbour = same[0], same[1]
    elsewhere = next(v[0] for p, v in by_partition.items() if p != partition_for(first, n))

    def patch(item: str, body: dict[str, Any]) -> dict[str, Any]:
        return accepted(
            commands.patch(f"/action-items/{item}", json=body, headers={"Idempotency-Key": "k-9"})
        )

    owner = patch(first, {"title": "mine"})
    reused = patch(neighbour, {"title": "not mine"})
    across = patch(elsewhere, {"title": "other partition"})
    retry = patch(first, {"title": "mine"})  # the same request again: the same command
    assert retry["commandId"] == owner["commandId"]

    def status(answer: dict[str, Any]) -> dict[str, Any]:
        response = queries.get(
            f"/commands/{answer['commandId']}",
            headers={"Consistency-Token": answer["consistencyToken"]},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def rejected_on(item_id: str, answer: dict[str, Any]) -> None:
        """Rejected naming the owner: on the command's status, the item's Exceptions node and
        count (nothing else of the item changed), and its history."""
        refused = status(answer)
        assert refused["status"] == "rejected", refused
        assert refused["exception"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert owner["commandId"] in refused["exception"]["message"]
        item = queries.get(
            f"/action-items/{item_id}", headers={"Consistency-Token": answer["consistencyToken"]}
        ).json()
        assert item["title"] == "t" and item["version"] == 1 and item["exceptionCount"] == 1
        assert item["exceptions"] == [refused["exception"]]
        history = queries.get(f"/action-items/{item_id}/exceptions").json()
        assert history == {"items": item["exceptions"], "nextCursor": None}

    assert status(owner)["status"] == "applied"
    assert status(retry)["status"] == "applied"  # (and the projector is past the retry)
    rejected_on(neighbour, reused)
    rejected_on(elsewhere, across)  # another partition: decided by the verdict on the log

    # the verdict is on the log: in the two reuses, not in the owner or its retry
    log = read_log(settings.kafka_bootstrap_servers, settings.commands_topic, n)
    verdicts = {r.command_id: r.command().key_owner for r in log}
    assert verdicts[reused["commandId"]] == verdicts[across["commandId"]] == owner["commandId"]
    assert verdicts[owner["commandId"]] is None
    db = mongo[settings.mongodb_database]
    claimed = db[KEY_REGISTRY].find_one({"_id": key_hash("kim", "k-9")})
    assert claimed is not None and claimed["commandId"] == owner["commandId"]

    # the store equals the reference fold of the log; a rebuild equals the live model and
    # leaves the registry (acceptance-time state, outside every generation) as it was
    assert differences(fold_log(log), read_stored(db)) == []
    wait_until_projected(db, settings.kafka_bootstrap_servers, settings.commands_topic)
    live, before = snapshot(db), active_generation(db)
    result = result_of(run_rebuild(system.stack))
    assert result["swapped"] is True and active_generation(db) != before
    assert snapshot(db) == live
    assert db[KEY_REGISTRY].find_one({"_id": key_hash("kim", "k-9")}) == claimed


def test_without_the_registry_a_keyed_write_is_accepted_and_counted(stack: Stack) -> None:
    """Fail open: the registry's store is a closed port; a keyed create still gets its 202
    (without a verdict), the metric counts it, a WARNING names the commandId; an unkeyed
    create does not ask the registry."""
    closed = f"mongodb://127.0.0.1:{free_port()}"
    with running_command_api(
        stack.env, stack.log_dir, MONGODB_URI=closed, KEY_REGISTRY_TIMEOUT_MS="300"
    ) as api:
        assert api.metric("command_api_key_registry_unavailable_total") == 0
        keyed = api.post({"title": "keyed"}, idempotency_key="k-open", x_client_id="kim")
        assert keyed.status_code == 202, keyed.text
        unkeyed = api.post({"title": "unkeyed"}, x_client_id="kim")
        assert unkeyed.status_code == 202, unkeyed.text
        assert api.metric("command_api_key_registry_unavailable_total") == 1
        command_id = keyed.json()["commandId"]
        warnings = [
            line
            for line in _json_lines(api.process.log_path)
            if line.get("level") == "WARNING" and "key registry unavailable" in line["msg"]
        ]
        assert [w.get("commandId") for w in warnings] == [command_id], warnings
    settings = stack.settings
    log = read_log(settings.kafka_bootstrap_servers, settings.commands_topic, 3)
    (record,) = [r for r in log if r.command_id == command_id]
    assert record.command().key_owner is None


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out
