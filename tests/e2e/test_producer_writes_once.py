"""One produce call leaves one record, also across a two-node outage (issue 20).

librdkafka's idempotent producer writes a produce call twice when it bumps its
epoch while a record the broker may already have appended waits for a retry
(confluentinc/librdkafka#4953); both records carry the call's one key, and the
log cleaner keeps only the later. The command API's producer settings
(``producer_config``: records never time out locally, one request in flight
per connection) exclude the bumps. This test puts them under far more pressure
than the API tests can: a raw producer with exactly those settings writes
about 200 records/s, each under a key of its own, to a replication-3,
min-ISR-2 topic of the 3-node cluster; two nodes are killed with ``kill -9``
for 20 s (thousands of records wait meanwhile), then return. Every record must
be delivered, and the log must hold exactly one record per key.

The shared broker on 9092 is never touched. With the settings before the
change (``message.timeout.ms`` 6 s) the same run left 3,669 keys twice on the
log, after 262 epoch-bump debug lines (docs/command-api.md, "One produce call, one
record").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from command_api.producer_settings import producer_config
from tests.support.command_api import CLUSTER_BOOTSTRAP, Cluster, kafka_sh
from tests.support.command_log import read_records

DOWN_SECONDS = 20.0
PARTITIONS = 3


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def topic() -> Iterator[str]:
    cluster = Cluster()
    cluster.start()
    admin = AdminClient({"bootstrap.servers": CLUSTER_BOOTSTRAP})
    name = f"writes-once-{uuid.uuid4().hex[:8]}"
    try:
        new = NewTopic(name, PARTITIONS, 3, config={"min.insync.replicas": "2"})
        admin.create_topics([new])[name].result(60)
        yield name
    finally:
        kafka_sh("start-cluster")  # every node up again before the topic is deleted
        admin.delete_topics([name])[name].result(60)
        cluster.stop()


def test_no_produce_call_is_written_twice_across_a_two_node_outage(topic: str) -> None:
    debug = Lines()
    logger = logging.getLogger("tests.producer_writes_once")
    logger.addHandler(debug)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    config = producer_config(CLUSTER_BOOTSTRAP, 5)
    producer = Producer({**config, "logger": logger, "debug": "eos"})
    outcomes: Counter[str] = Counter()

    def report(err: KafkaError | None, _msg: Message) -> None:
        outcomes["delivered" if err is None else err.name()] += 1

    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            key = uuid.uuid4().hex.encode()
            producer.produce(
                topic, key=key, value=b"x" * 200, partition=n % PARTITIONS, on_delivery=report
            )
            outcomes["produced"] += 1
            n += 1
            producer.poll(0.005)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    time.sleep(3)
    metadata = AdminClient({"bootstrap.servers": CLUSTER_BOOTSTRAP}).list_topics(topic, timeout=30)
    leaders = Counter(p.leader for p in metadata.topics[topic].partitions.values())
    survivor = max(sorted(leaders), key=lambda node: leaders[node])
    victims = [str(n) for n in (1, 2, 3) if n != survivor]
    kafka_sh("kill-node", *victims)
    time.sleep(DOWN_SECONDS)
    held = len(producer)
    kafka_sh("start-node", *victims)
    time.sleep(15)
    stop.set()
    writer.join(30)
    left = producer.flush(180)
    assert left == 0, f"{left} records not delivered 180 s after the nodes returned"

    records = read_records(CLUSTER_BOOTSTRAP, topic, 120)
    per_key = Counter((r.partition, r.key) for r in records)
    twice = {k: c for k, c in per_key.items() if c > 1}
    bumps = [line for line in debug.lines if "bumped epoch" in line]
    failures = {k: v for k, v in outcomes.items() if k not in ("produced", "delivered")}
    print(
        f"\nproducer writes once: {outcomes['produced']} produced, {outcomes['delivered']} "
        f"delivered, failures {failures}; "
        f"{held} held by the producer when the nodes returned; {len(records)} records on the "
        f"log, {len(twice)} keys more than once; epoch bumps {len(bumps)}"
    )
    assert outcomes["delivered"] == outcomes["produced"], outcomes
    assert twice == {}, (
        f"{len(twice)} keys on the log more than once (one produce call written twice, "
        f"epoch bumps: {bumps[:3]}): compaction would remove the earlier records. Check "
        "producer_config in command_api/publisher.py against the librdkafka in use"
    )
    assert len(records) == outcomes["produced"]
    assert bumps == [], bumps[:3]
