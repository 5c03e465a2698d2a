"""Run the real projector loop (on a thread or as `projector run`) and wait on what it stored."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition

from projector.bootstrap import Projector, build_projector
from projector.settings import ProjectorSettings
from servicekit.read_model import active_read_model
from servicekit.store_types import StoreDatabase
from tests.support import services
from tests.support.auth import operator_headers
from tests.support.waiting import wait_until


def positions(db: StoreDatabase) -> dict[int, int]:
    return {
        int(d["partition"]): int(d["nextOffset"]) for d in active_read_model(db).positions.find({})
    }


def caught_up(db: StoreDatabase, ends: dict[int, int]) -> bool:
    reached = positions(db)
    return all(reached.get(p, 0) >= end for p, end in ends.items() if end > 0)


def wait_projected(db: StoreDatabase, ends: dict[int, int], timeout: float = 60) -> None:
    """Bounded wait until the projector's stored positions reach ``ends`` (partition: offset)."""
    wait_until(
        lambda: caught_up(db, ends), timeout, f"the projector to reach {ends} (at {positions(db)})"
    )


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The consumer group's committed offsets (-1001 where none), without joining the group."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: int(tp.offset) for tp in probe.committed(tps, timeout=10)}
    finally:
        probe.close()


def wait_committed(
    bootstrap: str, group: str, topic: str, ends: dict[int, int], timeout: float = 60
) -> None:
    """Bounded wait until the group has committed every partition up to ``ends``."""

    def done() -> bool:
        offsets = committed_offsets(bootstrap, group, topic, len(ends))
        return all(offsets[p] >= end for p, end in ends.items() if end > 0)

    wait_until(done, timeout, f"group {group} to commit up to {ends}", 0.1)


def projector_settings(env: dict[str, str], **overrides: object) -> ProjectorSettings:
    values: dict[str, object] = {
        k.lower(): v for k, v in env.items() if k.lower() in ProjectorSettings.model_fields
    }
    values.update(overrides)
    return ProjectorSettings.model_validate(values)


@dataclass
class InProcessProjector:
    projector: Projector
    thread: threading.Thread
    errors: list[BaseException]

    def stop(self, timeout: float = 30) -> None:
        self.projector.stop.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"projector loop did not stop within {timeout} s")
        self.projector.close()
        if self.errors:
            raise self.errors[0]


@contextmanager
def projector_in_thread(settings: ProjectorSettings) -> Iterator[InProcessProjector]:
    """The real loop (real consumer, store and DLQ producer) on a thread of this process."""
    projector = build_projector(settings, threading.Event())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            projector.run()
        except BaseException as exc:  # surfaced by stop()
            errors.append(exc)

    thread = threading.Thread(target=run, name="projector-under-test", daemon=True)
    thread.start()
    running = InProcessProjector(projector, thread, errors)
    try:
        yield running
    finally:
        if thread.is_alive() or not projector.stop.is_set():
            running.stop()


def projector_process(
    env: dict[str, str], log_dir: Path, **overrides: str
) -> services.ServiceProcess:
    """A `projector run` process on a free port; ``overrides`` are extra environment variables."""
    return services.projector_process({**env, **overrides}, services.free_port(), log_dir)


def base_url(proc: services.ServiceProcess) -> str:
    return proc.health_url.rsplit("/", 1)[0]


def metric_values(url: str, name: str) -> dict[str, float]:
    """Samples of one metric from a /metrics page, keyed by their label text ('' for none)."""
    text = httpx.get(f"{url}/metrics", headers=operator_headers(), timeout=5).text
    out: dict[str, float] = {}
    for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        out[match.group(1) or ""] = float(match.group(2))
    return out


def readiness(url: str) -> tuple[int, str]:
    try:
        r = httpx.get(f"{url}/readyz", headers=operator_headers(), timeout=5)
        return r.status_code, r.text
    except httpx.HTTPError as exc:
        return 0, str(exc)
