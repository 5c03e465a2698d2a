"""The command API producer's settings and log throttle, pure."""

from __future__ import annotations

import logging

from command_api.app import create_app
from command_api.publisher import producer_config
from command_api.settings import CommandApiSettings
from servicekit.logs import Throttle


def test_the_producer_is_safe_before_it_is_fast() -> None:
    config = producer_config("broker:9092", 6000, 5)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["message.timeout.ms"] == 6000
    assert config["bootstrap.servers"] == "broker:9092"


def test_librdkafka_gives_up_after_the_bound_plus_the_grace() -> None:
    settings = CommandApiSettings(delivery_timeout_seconds=2, late_ack_grace_seconds=0.5)
    publisher = create_app(settings).state.publisher  # nothing starts before the lifespan
    assert publisher.timeout == 2
    assert publisher.config["message.timeout.ms"] == 2500
    defaults = CommandApiSettings()
    assert (defaults.delivery_timeout_seconds, defaults.late_ack_grace_seconds) == (5.0, 1.0)
    assert defaults.max_body_bytes == 64 * 1024


def test_the_throttle_lets_one_record_per_key_through() -> None:
    throttle = Throttle(interval=60)
    assert throttle.allow("a") and throttle.allow("b")
    assert not throttle.allow("a")
    record = logging.LogRecord("x", logging.ERROR, "f", 1, "FAIL [rdkafka] refused", None, None)
    assert throttle.filter(record) and not throttle.filter(record)
