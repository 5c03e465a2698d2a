"""kill -9 of `projector run` in the middle of 5,000 commands, then restart: exactly once.

The commands (creates, updates, every rejection kind, re-sent copies) are put
on the log first; the projector is killed without warning twice while it works
through them, at moments that fall anywhere inside a batch (between the status
writes, the item writes and the offset commit). The read model must equal the
pure domain folded once over the log: versions right, every status, no
duplicated Exceptions entry.
"""

from __future__ import annotations

from servicekit.read_model import active_read_model
from servicekit.store_types import StoreClient
from tests.conftest import Stack
from tests.support.projector_log import CommandMix, high_watermarks, produce_commands, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import projector_process, wait_projected, wait_until

COMMANDS = 5_000


def test_kill_9_in_the_middle_then_restart_gives_the_fold(stack: Stack, mongo: StoreClient) -> None:
    settings = stack.settings
    produce_commands(
        settings.kafka_bootstrap_servers,
        settings.commands_topic,
        settings.commands_partitions,
        CommandMix(items=700, seed=9, rejections=0.12, resend=0.03).take(COMMANDS),
    )
    ends = high_watermarks(
        settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
    )
    db = mongo[settings.mongodb_database]
    env = {**stack.env, "BATCH_SIZE": "100", "CONSUMER_SESSION_TIMEOUT_MS": "6000"}

    def processed() -> int:
        return int(active_read_model(db).commands.estimated_document_count())

    kills = []
    for threshold in (1_200, 3_000):
        proc = projector_process(env, stack.log_dir).start()

        def reached(t: int = threshold) -> bool:
            return processed() >= t

        wait_until(reached, 120, f"{threshold} command statuses", 0.01)
        proc.kill()  # SIGKILL: no batch is finished, no offset committed on the way out
        kills.append(processed())
    assert kills[-1] < COMMANDS, "the projector finished before it could be killed"

    proc = projector_process(env, stack.log_dir).start()
    try:
        wait_projected(db, ends, timeout=180)
        expected = fold_log(
            read_log(
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                settings.commands_partitions,
            )
        )
        assert differences(expected, read_stored(db)) == []
        codes = expected.codes()
        assert set(codes) == {
            "APPLIED",
            "VERSION_CONFLICT",
            "INVALID_TRANSITION",
            "ALREADY_EXISTS",
            "NOT_FOUND",
            "IDEMPOTENCY_KEY_REUSED",
        }
        assert expected.resent_copies > 50
    finally:
        assert proc.stop() == 0
