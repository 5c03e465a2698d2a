"""The projector's configuration."""

from __future__ import annotations

from pydantic import Field

from servicekit.settings import CommonSettings


class ProjectorSettings(CommonSettings):
    consumer_group: str = Field("actionitems-projector", min_length=1)
    # how long the group waits for a projector that stopped heartbeating (kill -9, a
    # hung host) before its partitions go to the others (broker minimum: 6 s)
    consumer_session_timeout_ms: int = Field(10_000, ge=6_000, le=300_000)
    batch_size: int = Field(1000, ge=1, le=100_000)
    poll_timeout_seconds: float = Field(0.2, gt=0, le=10)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8002, ge=0, le=65535)
    # backoff cap while the store is unreachable (the whole batch waits)
    store_retry_max_seconds: float = Field(5.0, gt=0, le=300)
    # backoff cap for a partition held at a record the store keeps refusing
    hold_retry_max_seconds: float = Field(60.0, gt=0, le=3600)
    # with nothing to apply, ping the store this often so /readyz stays truthful
    idle_probe_seconds: float = Field(2.0, gt=0, le=300)
    mongodb_timeout_ms: int = Field(3000, ge=100, le=120_000)
    # chunks of one write step sent to the store at the same time (independent documents)
    store_write_concurrency: int = Field(4, ge=1, le=32)
