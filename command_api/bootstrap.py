"""Wiring of the command API: settings -> producer, key registry -> codec -> use case. No HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from command_api.key_registry import KeyRegistry
from command_api.producer_settings import producer_config
from command_api.publisher import CommandPublisher
from command_api.service import CommandService
from command_api.settings import CommandApiSettings
from schemas.codec import CommandCodec


@dataclass(frozen=True)
class CommandApiParts:
    settings: CommandApiSettings
    publisher: CommandPublisher
    codec: CommandCodec
    service: CommandService
    key_registry: KeyRegistry


def bootstrap(settings: CommandApiSettings) -> CommandApiParts:
    """Build the parts; nothing connects until ``publisher.start()`` and
    ``key_registry.start()`` (the app's lifespan)."""
    publisher = CommandPublisher(
        producer_config(
            settings.kafka_bootstrap_servers,
            settings.producer_linger_ms,
            settings.producer_queue_max_messages,
            settings.producer_queue_max_kbytes,
        ),
        settings.commands_topic,
        settings.delivery_timeout_seconds,
    )
    registry = KeyRegistry(
        settings.mongodb_uri, settings.mongodb_database, settings.key_registry_timeout_ms
    )
    codec = CommandCodec()
    service = CommandService(publisher, codec, settings.delivery_timeout_seconds, keys=registry)
    return CommandApiParts(settings, publisher, codec, service, registry)
