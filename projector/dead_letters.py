"""Undecodable records go to the dead-letter topic, acknowledged by the broker before any commit."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from projector.settings import ProjectorSettings

DEAD_LETTER_TIMEOUT_SECONDS = 10.0


def dlq_producer_config(settings: ProjectorSettings) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        # a failed delivery is reported within the flush bound instead of lingering
        # in the queue and being sent again alongside the retry
        "message.timeout.ms": int(DEAD_LETTER_TIMEOUT_SECONDS * 1000),
    }


class DeadLetterUnavailable(Exception):
    """The dead-letter topic did not acknowledge every record; none may be committed."""


class DeadLetters:
    """Sends undecodable records to the dead-letter topic, waiting for the broker's ack."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def send(self, messages: Sequence[tuple[Message, str]]) -> None:
        """Write every record with its reason and source position; raise unless all are acked."""
        failures: list[str] = []

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        try:
            for msg, reason in messages:
                self._producer.produce(
                    self._topic,
                    key=msg.key(),
                    value=msg.value(),
                    headers=dead_letter_headers(msg, reason),
                    on_delivery=report,
                )
            remaining = self._producer.flush(DEAD_LETTER_TIMEOUT_SECONDS + 5)
        except (KafkaException, BufferError) as exc:
            raise DeadLetterUnavailable(f"dead-letter topic {self._topic}: {exc}") from exc
        if remaining or failures:
            raise DeadLetterUnavailable(
                f"dead-letter topic {self._topic} did not take {remaining or len(failures)} "
                f"record(s): {failures[:3]}"
            )


def dead_letter_headers(msg: Message, reason: str) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers plus why it failed and where it sits on the source topic."""
    received = msg.headers() or []  # a consumed record's headers are a list of pairs
    original = list(received.items()) if isinstance(received, dict) else list(received)
    _kind, timestamp = msg.timestamp()
    return [
        *original,
        ("dlq.reason", reason.encode()),
        ("dlq.source.topic", str(msg.topic()).encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.source.timestamp", str(timestamp).encode()),
    ]
