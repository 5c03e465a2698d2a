"""Typed configuration from environment variables (and a .env file), checked once at start-up."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every process reads; each service extends this class with its own."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field("localhost:9092", min_length=1)
    mongodb_uri: str = "mongodb://localhost:27017"
    mongodb_database: str = Field("actionitems", pattern=r"^[A-Za-z0-9_-]{1,60}$")
    commands_topic: str = Field("action-items.commands", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    dlq_topic: str = Field("action-items.commands.dlq", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    commands_partitions: int = Field(6, ge=1, le=1000)
    replication_factor: int = Field(1, ge=1, le=10)
    min_insync_replicas: int = Field(1, ge=1, le=10)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {part!r}")
        return value


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings or stop the process with one clear line per bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper()
            print(
                f"configuration error: {name}={error.get('input')!r}: {error['msg']}",
                file=sys.stderr,
            )
        raise SystemExit(2) from None
