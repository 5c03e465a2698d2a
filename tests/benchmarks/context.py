"""The state one bench run shares between its measurements."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from tests.benchmarks import cpu, wrk
from tests.benchmarks.results import Report
from tests.benchmarks.stack import Stack

CREATE_BODY = '{"title": "load", "priority": "high", "tags": ["load", "bench"]}'


@dataclass
class Bench:
    stack: Stack
    quick: bool
    out: Path
    logs: Path
    flags: list[str]
    report: Report
    server: str = ""
    profile: bool = False
    # `Bearer <JWT>` of the bench's callers (write and read scopes), used round robin
    tokens: list[str] = field(default_factory=list)
    # the key set the product verifies with (the peers verify with it too)
    jwks: str = ""
    # the best HTTP rate any server reached in this run (the generator must do 3x that)
    best_rate: float = 0.0
    best_rate_what: str = ""
    # the product's best accepted writes/s (freshness loads it at half of that)
    max_write_rate: float = 0.0
    # the product's p50 at 8 connections (ms), to pace a background load (a guess until measured)
    write_p50_low: float = 5.0
    series: dict[str, Any] = field(default_factory=dict)

    def auth(self) -> dict[str, str]:
        return {"Authorization": self.tokens[0]} if self.tokens else {}

    @property
    def seconds(self) -> float:
        return 3.0 if self.quick else 10.0

    @property
    def warmup(self) -> float:
        return 1.0 if self.quick else 2.0

    def load(
        self, url: str, script: str, connections: int, what: str, seconds: float | None = None
    ) -> wrk.WrkResult:
        """A warm-up run (discarded), then the measured run; remembers the best rate."""
        wrk.run(url, script, connections, self.warmup)
        with cpu.measure() as split:
            result = wrk.run(url, script, connections, seconds or self.seconds)
        result = dataclasses.replace(result, cpu=split.as_dict())
        print(
            f"  {what:38} c={connections:<4} {result.rate:9,.0f}/s  p50 {result.p50_ms:7.1f} ms"
            f"  p99 {result.p99_ms:7.1f} ms  errors {result.errors}\n      {split.line()}",
            flush=True,
        )
        if result.rate > self.best_rate:
            self.best_rate, self.best_rate_what = result.rate, what
        return result

    @contextlib.contextmanager
    def own_topic(self, name: str, partitions: int | None = None) -> Iterator[str]:
        """A fresh topic on the stack's broker (same partitions as the product), deleted after."""
        topic = f"bench-{uuid.uuid4().hex[:8]}.{name}"
        admin = AdminClient({"bootstrap.servers": self.stack.bootstrap})
        spec = NewTopic(topic, partitions or self.stack.settings.commands_partitions, 1)
        for future in admin.create_topics([spec], operation_timeout=30).values():
            future.result(timeout=60)
        try:
            yield topic
        finally:
            with contextlib.suppress(Exception):
                for future in admin.delete_topics([topic], operation_timeout=30).values():
                    future.result(timeout=60)
