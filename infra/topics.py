"""Create the command and dead-letter topics as configured; refuse to run on a wrong log.

Idempotent: an existing topic with the expected settings is left alone; one with
another cleanup policy or partition count stops the bootstrap with a clear error
(changing the partition count would break "all commands of one ActionItem in
one partition, in order").
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from servicekit.settings import CommonSettings, load_settings


class TopicMismatch(Exception):
    pass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def topic_specs(settings: CommonSettings) -> list[TopicSpec]:
    common = {"min.insync.replicas": str(settings.min_insync_replicas)}
    return [
        TopicSpec(
            settings.commands_topic,
            settings.commands_partitions,
            settings.replication_factor,
            {**common, "cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        TopicSpec(
            settings.dlq_topic,
            settings.commands_partitions,
            settings.replication_factor,
            {**common, "cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)},
        ),
    ]


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = 30) -> list[str]:
    """Create missing topics, check existing ones; returns a line per topic for the operator."""
    metadata = admin.list_topics(timeout=timeout)
    missing = [s for s in specs if s.name not in metadata.topics]
    report = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
                for s in missing
            ],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.append(f"created {name}")
            except KafkaException as exc:
                if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a racing bootstrap
                    raise
        metadata = _wait_for_topics(admin, [s.name for s in missing], timeout)
    for spec in specs:
        check_topic(admin, spec, len(metadata.topics[spec.name].partitions), timeout)
        if f"created {spec.name}" not in report:
            report.append(f"ok {spec.name}")
    return report


def _wait_for_topics(admin: AdminClient, names: list[str], timeout: float) -> Any:
    """Metadata right after a create may not list the topic yet: wait for it, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout)
        if all(n in metadata.topics and metadata.topics[n].partitions for n in names):
            return metadata
        if time.monotonic() > deadline:
            raise KafkaException(f"created topics {names} did not appear within {timeout} s")
        time.sleep(0.1)


def check_topic(admin: AdminClient, spec: TopicSpec, partitions: int, timeout: float) -> None:
    if partitions != spec.partitions:
        raise TopicMismatch(
            f"topic {spec.name} has {partitions} partitions, configuration says {spec.partitions}; "
            "changing it would move ActionItems to other partitions and break their order. "
            "Fix COMMANDS_PARTITIONS or migrate the topic deliberately."
        )
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    config = admin.describe_configs([resource])[resource].result(timeout=timeout)
    policy = config["cleanup.policy"].value
    if policy != spec.config["cleanup.policy"]:
        raise TopicMismatch(
            f"topic {spec.name} has cleanup.policy={policy}, expected "
            f"{spec.config['cleanup.policy']}; refusing to run on a wrong log"
        )


def main() -> int:
    settings = load_settings(CommonSettings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    try:
        for line in ensure_topics(admin, topic_specs(settings)):
            print(f"[topics] {line}")
    except TopicMismatch as exc:
        print(f"[topics] ERROR: {exc}", file=sys.stderr)
        return 3
    except KafkaException as exc:
        print(
            f"[topics] ERROR: Kafka at {settings.kafka_bootstrap_servers} did not answer: {exc}. "
            "Is it running? (make up)",
            file=sys.stderr,
        )
        return 4
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
