"""The store goes away for 10 s (later it hangs) under load: nothing lost, honest /readyz.

The projector talks to a FerretDB of this test's own (same PostgreSQL, same
data as the shared store), which is killed and, later, frozen with SIGSTOP,
while writers keep sending commands through the command API. Throughout, the
consumer group's committed offsets never pass what the store holds.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from servicekit.store_types import StoreClient
from tests.conftest import Stack
from tests.support import services
from tests.support.auth import caller_headers
from tests.support.projector_log import high_watermarks, read_log
from tests.support.projector_model import differences, fold_log, read_stored
from tests.support.projector_runtime import (
    metric_values,
    positions,
    projector_process,
    readiness,
    wait_projected,
    wait_until,
)
from tests.support.projector_store import PrivateFerretDB, private_store  # noqa: F401


@dataclass
class Writers:
    """Commands through the command API at a steady pace until stopped."""

    url: str
    accepted: list[dict[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(5)
        items: list[str] = []
        with httpx.Client(
            headers=caller_headers("anonymous"), base_url=self.url, timeout=10
        ) as client:
            for i in itertools.count():
                if self.stop.wait(0.01):
                    return
                if not items or i % 3 == 0:
                    r = client.post(
                        "/action-items",
                        json={"title": f"t{i}"},
                        headers={"Idempotency-Key": f"w{i}"},
                    )
                else:
                    body = rng.choice([{"title": f"u{i}"}, {"status": "done"}, {"status": "open"}])
                    r = client.patch(f"/action-items/{rng.choice(items[-50:])}", json=body)
                if r.status_code != 202:
                    self.failures.append(r.text)
                    continue
                self.accepted.append(r.json())
                if i % 3 == 0:
                    items.append(r.json()["actionItemId"])


@dataclass
class CommitWatch:
    """Samples the group's committed offsets and the stored positions (via the shared store)."""

    stack: Stack
    mongo: StoreClient
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        s = self.stack.settings
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap_servers,
                "group.id": self.stack.env["CONSUMER_GROUP"],
            }
        )
        db = self.mongo[s.mongodb_database]
        tps = [TopicPartition(s.commands_topic, p) for p in range(s.commands_partitions)]
        try:
            while not self.stop.wait(0.2):
                committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=5)}
                stored = positions(db)  # read after the commits: it can only have grown since
                self.samples += 1
                for p, offset in committed.items():
                    if offset > 0 and offset > stored.get(p, 0):
                        self.violations.append(
                            f"partition {p}: committed {offset}, stored {stored}"
                        )
        finally:
            consumer.close()


@pytest.fixture
def apis(stack: Stack) -> Iterator[tuple[str, str]]:
    ports = [services.free_port(), services.free_port()]
    query_url = f"http://127.0.0.1:{ports[1]}"
    command_api = services.command_api_process(
        {**stack.env, "QUERY_API_BASE_URL": query_url}, ports[0], stack.log_dir
    ).start()
    query_api = services.query_api_process(stack.env, ports[1], stack.log_dir).start()
    try:
        yield f"http://127.0.0.1:{ports[0]}", query_url
    finally:
        command_api.stop()
        query_api.stop()


def watch_readiness(url: str, until: float) -> tuple[list[tuple[int, str]], float]:
    """/readyz answers, and the largest consumer lag the metrics showed, until ``until``."""
    seen: list[tuple[int, str]] = []
    lag = 0.0
    while time.monotonic() < until:
        seen.append(readiness(url))
        lag = max([lag, *metric_values(url, "projector_consumer_lag").values()])
        time.sleep(0.2)  # sampling pace, not a wait for a condition
    return seen, lag


def test_store_down_10_s_and_hung_under_load(
    stack: Stack,
    mongo: StoreClient,
    private_store: PrivateFerretDB,  # noqa: F811
    apis: tuple[str, str],
    request: pytest.FixtureRequest,
) -> None:
    command_url, query_url = apis
    settings = stack.settings
    db = mongo[settings.mongodb_database]
    projector = projector_process(
        stack.env,
        stack.log_dir,
        MONGODB_URI=private_store.uri,
        MONGODB_TIMEOUT_MS="1500",
        STORE_RETRY_MAX_SECONDS="1",
        BATCH_SIZE="200",
    ).start()
    request.addfinalizer(projector.kill)  # never left running when an assertion fails
    url = projector.health_url.rsplit("/", 1)[0]
    wait_until(lambda: readiness(url)[0] == 200, 30, "the projector to be ready")
    writers, watch = Writers(command_url), CommitWatch(stack, mongo)
    threads = [threading.Thread(target=t.run, daemon=True) for t in (writers, watch)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(writers.accepted) >= 100, 30, "100 accepted commands")

        # 1. the store is gone for 10 s
        private_store.kill()
        down_since = time.monotonic()
        during_kill, lag_while_down = watch_readiness(url, down_since + 10)
        accepted_while_down = len(writers.accepted)
        private_store.start()
        wait_until(lambda: readiness(url)[0] == 200, 30, "ready again after the store came back")

        # 2. the store hangs (accepts connections, answers nothing) for 6 s
        private_store.freeze()
        during_freeze, _ = watch_readiness(url, time.monotonic() + 6)
        private_store.thaw()
        wait_until(lambda: readiness(url)[0] == 200, 30, "ready again after the store thawed")
        wait_until(lambda: len(writers.accepted) >= accepted_while_down + 100, 30, "more load")
    finally:
        writers.stop.set()
        for t in threads:
            t.join(15)
        watch.stop.set()

    assert writers.failures == []
    assert any(code == 503 and "store" in body for code, body in during_kill), during_kill
    assert during_kill[-1][0] == 503
    assert lag_while_down > 50  # the lag the operator sees grows while the store is away
    # A hung store shows as "store not answering" when a command was caught in flight, or as
    # "store unreachable: ... timed out" when the driver's heartbeat timed out first and the
    # batch waits in server selection (pymongo marks the server unknown): both are honest.
    assert any(
        code == 503 and ("store not answering" in body or "store unreachable" in body)
        for code, body in during_freeze
    ), during_freeze

    ends = high_watermarks(
        settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
    )
    wait_projected(db, ends, timeout=120)
    expected = fold_log(
        read_log(
            settings.kafka_bootstrap_servers, settings.commands_topic, settings.commands_partitions
        )
    )
    assert differences(expected, read_stored(db)) == []
    assert {a["commandId"] for a in writers.accepted} <= set(expected.statuses)
    with httpx.Client(
        headers=caller_headers("anonymous"), base_url=query_url, timeout=10
    ) as client:
        for accepted in writers.accepted[-20:]:
            status = client.get(f"/commands/{accepted['commandId']}")
            assert status.status_code == 200, status.text
    assert watch.samples > 50
    assert watch.violations == []
    assert metric_values(url, "projector_store_retries_total")[""] > 0
    wait_until(
        lambda: all(v == 0 for v in metric_values(url, "projector_consumer_lag").values()),
        10,
        "consumer lag 0 on every partition",
    )
    assert projector.stop() == 0
