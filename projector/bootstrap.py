"""Wire `projector run` from settings: the Kafka consumer and DLQ producer, the store, the gate.

One place builds the real adapters, so the CLI, the tests and the benchmark run
exactly the same loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer

from projector.apply import StoreProjection
from projector.consumer import ConsumerLag, consumer_config
from projector.dead_letters import DeadLetters, dlq_producer_config
from projector.handover import HandoverControl, HandoverGate
from projector.health import Health
from projector.loop import ProjectorLoop
from projector.parking import ParkingLot
from projector.settings import ProjectorSettings
from projector.store import ProjectionStore
from servicekit.store_client import store_client
from servicekit.store_types import StoreClient


def mongo_client(settings: ProjectorSettings, health: Health | None = None) -> StoreClient:
    return store_client(
        settings.mongodb_uri,
        app_name="projector",
        timeout_ms=settings.mongodb_timeout_ms,
        socket_timeout_ms=max(settings.mongodb_timeout_ms * 10, 30_000),
        max_pool_size=max(20, 2 * settings.store_write_concurrency),
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
    store = ProjectionStore(
        client, settings.mongodb_database, write_concurrency=settings.store_write_concurrency
    )
    loop = ProjectorLoop(
        settings,
        StoreProjection(store),
        Consumer({**consumer_config(settings), "stats_cb": lag.on_stats}),
        DeadLetters(producer, settings.dlq_topic),
        health,
        stop,
        HandoverGate(HandoverControl(client[settings.mongodb_database]), stop),
        lag,
        ParkingLot(client, settings.mongodb_database),
    )
    return Projector(settings, loop, health, stop, client, producer)
