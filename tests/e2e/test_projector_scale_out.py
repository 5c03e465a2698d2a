"""Two `projector run` processes in one consumer group, rebalanced while commands keep coming.

A starts alone; B joins (rebalance); A stops with SIGTERM (a clean exit,
rebalance) and starts again (rebalance); B is killed with SIGKILL (rebalance
after its session times out). Nothing may be lost or applied twice.
"""

from __future__ import annotations

import json
import signal
import threading

from servicekit.store_types import StoreClient
from tests.conftest import Stack
from tests.support.projector_log import CommandMix, high_watermarks, produce_commands, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import (
    base_url,
    positions,
    projector_process,
    readiness,
    wait_projected,
    wait_until,
)


def assigned(url: str) -> list[int]:
    code, body = readiness(url)
    return list(json.loads(body).get("partitions", [])) if code == 200 else []


def test_two_projectors_and_rebalances_lose_and_double_nothing(
    stack: Stack, mongo: StoreClient
) -> None:
    settings = stack.settings
    db = mongo[settings.mongodb_database]
    env = {**stack.env, "BATCH_SIZE": "100", "CONSUMER_SESSION_TIMEOUT_MS": "6000"}
    mix = CommandMix(items=400, seed=21, rejections=0.1, resend=0.03)
    stop = threading.Event()
    produced: list[int] = []

    def writers() -> None:
        while not stop.wait(0.05):
            produced.append(
                produce_commands(
                    settings.kafka_bootstrap_servers,
                    settings.commands_topic,
                    settings.commands_partitions,
                    mix.take(20),
                )
            )

    def processed() -> int:
        return sum(positions(db).values())

    feeder = threading.Thread(target=writers, daemon=True)
    a = projector_process(env, stack.log_dir).start()
    feeder.start()
    b = None
    try:
        wait_until(lambda: processed() > 150, 60, "A to make progress alone")
        b = projector_process(env, stack.log_dir).start()
        wait_until(
            lambda: assigned(base_url(a)) and assigned(base_url(b)),
            60,
            "A and B to share the partitions",
        )
        shared = sorted(assigned(base_url(a)) + assigned(base_url(b)))
        assert shared == list(range(settings.commands_partitions))
        mark = processed()
        wait_until(lambda: processed() > mark + 150, 60, "progress with two projectors")

        a.signal(signal.SIGTERM)
        assert a.process is not None and a.process.wait(30) == 0  # clean shutdown
        assert '"projector stopped"' in a.log_tail(2000)
        wait_until(
            lambda: len(assigned(base_url(b))) == settings.commands_partitions,
            60,
            "B to take every partition",
        )
        mark = processed()
        wait_until(lambda: processed() > mark + 150, 60, "progress with B alone")

        a = projector_process(env, stack.log_dir).start()
        wait_until(lambda: assigned(base_url(a)), 60, "A to get partitions back")
        mark = processed()
        wait_until(lambda: processed() > mark + 150, 60, "progress after A rejoined")
        b.kill()
        wait_until(
            lambda: len(assigned(base_url(a))) == settings.commands_partitions,
            60,
            "A to take over the killed B's partitions",
        )
        mark = processed()
        wait_until(lambda: processed() > mark + 150, 60, "progress with A alone")
    finally:
        stop.set()
        feeder.join(30)

    try:
        ends = high_watermarks(
            settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
        )
        wait_projected(db, ends, timeout=120)
        expected = fold_log(
            read_log(
                settings.kafka_bootstrap_servers,
                settings.commands_topic,
                settings.commands_partitions,
            )
        )
        assert len(expected.statuses) + expected.resent_copies == sum(produced)
        assert differences(expected, read_stored(db)) == []
    finally:
        for proc in (a, b):
            if proc is not None:
                proc.stop()
