"""Wiring of the command API: settings -> producer -> codec -> use case. No HTTP here."""

from __future__ import annotations

from dataclasses import dataclass

from command_api.publisher import CommandPublisher, producer_config
from command_api.service import CommandService
from command_api.settings import CommandApiSettings
from schemas.codec import CommandCodec


@dataclass(frozen=True)
class CommandApiParts:
    settings: CommandApiSettings
    publisher: CommandPublisher
    codec: CommandCodec
    service: CommandService


def bootstrap(settings: CommandApiSettings) -> CommandApiParts:
    """Build the parts; nothing connects until ``publisher.start()`` (the app's lifespan)."""
    publisher = CommandPublisher(
        producer_config(
            settings.kafka_bootstrap_servers,
            int((settings.delivery_timeout_seconds + settings.late_ack_grace_seconds) * 1000),
            settings.producer_linger_ms,
        ),
        settings.commands_topic,
        settings.delivery_timeout_seconds,
    )
    codec = CommandCodec()
    service = CommandService(publisher, codec, settings.delivery_timeout_seconds)
    return CommandApiParts(settings, publisher, codec, service)
