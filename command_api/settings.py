"""The command API's configuration."""

from __future__ import annotations

from pydantic import Field

from servicekit.settings import CommonSettings


class CommandApiSettings(CommonSettings):
    delivery_timeout_seconds: float = Field(5.0, gt=0, le=120)
    # librdkafka's queue (records never time out there): the memory bound while the log
    # is down; a full queue is an immediate 503 (queue_full, not written).
    producer_queue_max_messages: int = Field(20_000, ge=100, le=1_000_000)
    producer_queue_max_kbytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    query_api_base_url: str = Field("http://localhost:8001", pattern=r"^https?://")
    retry_after_seconds: int = Field(5, ge=1, le=3600)
    producer_linger_ms: int = Field(1, ge=0, le=1000)
    shutdown_flush_seconds: float = Field(30.0, gt=0, le=600)
    # Bound of one Idempotency-Key registry call (command_api/key_registry.py); past it the
    # command is accepted without a key verdict (fail open).
    key_registry_timeout_ms: int = Field(500, ge=10, le=10_000)
