"""A command that reached the log twice takes effect at its first copy, live and in every replay.

Issue 20: a PATCH whose first attempt landed on the log although its writer did
not get the 202 (a late acknowledgement), another writer's PATCH of the same
item accepted after it, then the first writer's retry with the same
Idempotency-Key on an API instance that does not remember the first attempt:
two copies of one command with a command between them. Here the first attempt
is answered (its answer is simply not used) and the retry goes to a second API
instance: the log is exactly the one a late landing leaves, and the order is
deterministic. Both PATCHes carry ``If-Match: "1"``, so the order decides:
whichever is applied first wins, the other is a VERSION_CONFLICT.

Live, a rebuild before compaction and a rebuild after a real log-cleaner pass
all hold the same documents, every collection, every field.
"""

from __future__ import annotations

from pathlib import Path

from servicekit.read_model import active_generation
from servicekit.store_types import StoreClient
from tests.conftest import RunningSystem
from tests.support.command_api import CommandApi, running_command_api
from tests.support.command_log import by_command, read_records
from tests.support.compaction import compact_now, compare_models, run_rebuild
from tests.support.rebuild_oracle import expected_model, read_log, snapshot, wait_until_projected


def test_a_late_first_copy_keeps_its_place_live_and_after_compaction(
    system: RunningSystem, mongo: StoreClient, tmp_path: Path
) -> None:
    env = system.stack.env
    topic = system.stack.settings.commands_topic
    partitions = system.stack.settings.commands_partitions
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    db = mongo[system.stack.settings.mongodb_database]
    api = CommandApi(system.command_url, system.command_api, env)

    created = api.post({"title": "contended"})
    assert created.status_code == 202, created.text
    item = created.json()["actionItemId"]
    mine = {"title": "mine", "priority": "high"}
    first = api.patch(item, mine, idempotency_key="late-patch", if_match='"1"')
    assert first.status_code == 202, first.text
    command_id = first.json()["commandId"]
    theirs = api.patch(item, {"title": "theirs"}, if_match='"1"', x_client_id="other-writer")
    assert theirs.status_code == 202, theirs.text
    with running_command_api(env, tmp_path) as second_instance:
        retry = second_instance.patch(item, mine, idempotency_key="late-patch", if_match='"1"')
    assert retry.status_code == 202, retry.text
    assert retry.json()["commandId"] == command_id

    records = read_records(bootstrap, topic)
    copies = by_command(records)[command_id]
    (between,) = by_command(records)[theirs.json()["commandId"]]
    assert len(copies) == 2, f"expected two copies of {command_id}, found {len(copies)}"
    assert copies[0].offset < between.offset < copies[1].offset
    assert copies[0].key != copies[1].key, "two attempts share a record key"
    assert copies[0].command().accepted_at < copies[1].command().accepted_at
    assert copies[0].command().correlation_id != copies[1].command().correlation_id

    wait_until_projected(db, bootstrap, topic)
    live = snapshot(db)
    log = read_log(bootstrap, topic)
    assert live == expected_model(log)
    status = live["commands"][command_id]
    assert (status["status"], status["partition"], status["offset"]) == (
        "applied",
        copies[0].partition,
        copies[0].offset,
    )
    conflict = live["commands"][theirs.json()["commandId"]]
    assert conflict["exception"]["code"] == "VERSION_CONFLICT"
    assert live["items"][item]["title"] == "mine" and live["items"][item]["version"] == 2
    # The test can tell: without the first copy (what the cleaner did to a key shared by both
    # copies) the retry would decide at its own place, after the other writer's PATCH.
    without_first = [r for r in log if (r[0], r[1]) != (copies[0].partition, copies[0].offset)]
    assert expected_model(without_first)["items"][item]["title"] == "theirs"

    before_compaction = run_rebuild(env)
    assert before_compaction["swapped"] is True
    rebuilt = compare_models(live, snapshot(db))
    assert rebuilt.differences == [], rebuilt.differences[:5]

    compaction = compact_now(bootstrap, topic, partitions)
    assert compaction.removed_from_before() == [], "the cleaner removed a record of a command"
    assert len(by_command(compaction.after)[command_id]) == 2
    wait_until_projected(db, bootstrap, topic)
    live_after = snapshot(db)  # the markers and segment rolls of the helper are in it now
    generation = active_generation(db)
    after_compaction = run_rebuild(env)
    assert after_compaction["swapped"] is True and after_compaction["generation"] != generation
    final = snapshot(db)
    helper_ids = compaction.helper_item_ids() | compaction.helper_command_ids()
    compared = compare_models(live, final, extra_allowed=helper_ids)
    assert compared.differences == [], compared.differences[:5]
    assert final == live_after
    assert final == expected_model(read_log(bootstrap, topic))
    print(
        f"\nfirst copy wins (b): copies produced 1 (2 records of {command_id}), "
        f"records removed by the cleaner {len(compaction.removed_markers)} (marker first copies) "
        f"+ {len(compaction.removed_from_before())} of the workload; documents compared "
        f"{rebuilt.compared} before and {compared.compared} after compaction; differences "
        f"{len(rebuilt.differences)} and {len(compared.differences)}"
    )
