"""Wire `projector run` from settings: the Kafka consumer and DLQ producer, the store, the gate.

One place builds the real adapters, so the CLI, the tests and the benchmark run
exactly the same loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer
from pymongo import MongoClient

from projector.handover import HandoverControl, HandoverGate
from projector.runner import (
    ConsumerLag,
    DeadLetters,
    Health,
    ProjectorLoop,
    consumer_config,
    dlq_producer_config,
)
from projector.settings import ProjectorSettings
from projector.store import ProjectionStore
from servicekit.store_types import StoreClient


def mongo_client(settings: ProjectorSettings, health: Health | None = None) -> StoreClient:
    return MongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        socketTimeoutMS=max(settings.mongodb_timeout_ms * 10, 30_000),
        uuidRepresentation="standard",
        maxPoolSize=max(20, 2 * settings.store_write_concurrency),
        event_listeners=[health.store_commands] if health is not None else [],
    )


@dataclass
class Projector:
    """A wired `projector run`: ``run()`` until ``stop`` is set, then ``close()``."""

    settings: ProjectorSettings
    loop: ProjectorLoop
    health: Health
    stop: threading.Event
    client: StoreClient
    dead_letter_producer: Producer

    def run(self) -> None:
        self.loop.run()

    def close(self) -> None:
        self.dead_letter_producer.flush(10)
        self.client.close()


def build_projector(settings: ProjectorSettings, stop: threading.Event) -> Projector:
    health = Health()
    client = mongo_client(settings, health)
    producer = Producer(dlq_producer_config(settings))
    lag = ConsumerLag(settings.commands_topic, health)
    loop = ProjectorLoop(
        settings,
        ProjectionStore(
            client, settings.mongodb_database, write_concurrency=settings.store_write_concurrency
        ),
        Consumer(
            {
                **consumer_config(settings),
                "stats_cb": lag.on_stats,
            }
        ),
        DeadLetters(producer, settings.dlq_topic),
        health,
        stop,
        HandoverGate(HandoverControl(client[settings.mongodb_database]), stop),
        lag,
    )
    return Projector(settings, loop, health, stop, client, producer)
