"""The query API's configuration."""

from __future__ import annotations

from pydantic import Field

from servicekit.settings import CommonSettings


class QueryApiSettings(CommonSettings):
    consistency_wait_seconds: float = Field(5.0, gt=0, le=60)
    # while a Consistency-Token request waits: one positions query this often (none otherwise)
    position_poll_seconds: float = Field(0.005, gt=0, le=5)
    generation_cache_seconds: float = Field(0.5, ge=0, le=60)
    retry_after_seconds: int = Field(1, ge=1, le=3600)
    mongodb_timeout_ms: int = Field(3000, ge=100, le=120_000)
    # connections of the asyncio client that serves get by id (query_api/item_reads.py):
    # past this many, requests wait their turn in the process, where waiting is cheap,
    # instead of opening more store connections (fewer was faster at 64 clients)
    mongodb_read_pool_size: int = Field(16, ge=1, le=1000)
