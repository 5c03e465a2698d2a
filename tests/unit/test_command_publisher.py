"""The command API producer's settings and log throttle, pure."""

from __future__ import annotations

import logging

from command_api.app import create_app
from command_api.producer_settings import producer_config
from command_api.settings import CommandApiSettings
from servicekit.logs import Throttle


def test_the_producer_is_safe_before_it_is_fast() -> None:
    config = producer_config("broker:9092", 5)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["bootstrap.servers"] == "broker:9092"
    assert config["linger.ms"] == 5


def test_one_produce_call_is_never_written_twice_by_an_epoch_bump() -> None:
    """The two epoch bumps a healthy deployment can meet are switched off (issue 20):
    no local record timeout, never a second request in flight to fail out of order."""
    config = producer_config("broker:9092", 5)
    assert config["message.timeout.ms"] == 0  # infinite
    assert config["max.in.flight.requests.per.connection"] == 1


def test_the_producer_queue_is_the_memory_bound() -> None:
    settings = CommandApiSettings(
        delivery_timeout_seconds=2, producer_queue_max_messages=500, producer_queue_max_kbytes=2048
    )
    publisher = create_app(settings).state.publisher  # nothing starts before the lifespan
    assert publisher.timeout == 2
    assert publisher.config["message.timeout.ms"] == 0
    assert publisher.config["queue.buffering.max.messages"] == 500
    assert publisher.config["queue.buffering.max.kbytes"] == 2048
    defaults = CommandApiSettings()
    assert defaults.delivery_timeout_seconds == 5.0
    assert (defaults.producer_queue_max_messages, defaults.producer_queue_max_kbytes) == (
        20_000,
        32 * 1024,
    )
    assert defaults.max_body_bytes == 64 * 1024


def test_the_throttle_lets_one_record_per_key_through() -> None:
    throttle = Throttle(interval=60)
    assert throttle.allow("a") and throttle.allow("b")
    assert not throttle.allow("a")
    record = logging.LogRecord("x", logging.ERROR, "f", 1, "FAIL [rdkafka] refused", None, None)
    assert throttle.filter(record) and not throttle.filter(record)
