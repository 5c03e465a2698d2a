"""The suite's own infrastructure, and one isolated stage (topics, database, processes) each."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaException
from pymongo import MongoClient
from pymongo.database import Database

from servicekit.settings import CommonSettings
from tests.reliability.auth import ENV as AUTH_ENV
from tests.reliability.auth import HEADERS
from tests.reliability.check import BacklogWatch, Counts, Window, count
from tests.reliability.load import Clock, Load
from tests.reliability.own_kafka import OwnKafka
from tests.reliability.results import Row
from tests.reliability.toxiproxy import Toxiproxy
from tests.support import services
from tests.support.command_api import own_topics
from tests.support.projector_store import PrivateFerretDB
from tests.support.services import REPO, ServiceProcess, free_port

BASE = REPO / ".infra" / "reliability"
START_TIMEOUT = 120  # a service process on two shared, busy cores

# Bounds of the services under test: short enough that faults show within a scenario.
SERVICE_ENV = {
    "COMMANDS_PARTITIONS": "3",
    "DELIVERY_TIMEOUT_SECONDS": "3",
    "RETRY_AFTER_SECONDS": "1",
    "CONSUMER_SESSION_TIMEOUT_MS": "6000",
    "BATCH_SIZE": "200",
    "STORE_RETRY_MAX_SECONDS": "1",
    "MONGODB_TIMEOUT_MS": "2000",
    "LOG_LEVEL": "INFO",
    # the per-caller write limit (default 500/s) is not what these scenarios measure
    "RATE_LIMIT_WRITES": "100000/second",
}


@dataclass
class Suite:
    """What every scenario shares: one broker and one FerretDB of the suite's own."""

    base: Path
    kafka: OwnKafka
    store: PrivateFerretDB
    proxy_ports: dict[str, int]
    toxiproxy: Toxiproxy | None = None
    soak_seconds: float = 600.0

    @classmethod
    @contextlib.contextmanager
    def running(cls, soak_seconds: float = 600.0) -> Iterator[Suite]:
        for old in BASE.glob("*"):
            if old.name != "suite-stderr.log":
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        BASE.mkdir(parents=True, exist_ok=True)
        proxy_ports = {"CMDPROXY": free_port(), "PROJPROXY": free_port()}
        kafka = OwnKafka.create(BASE / "kafka", 1, proxy_ports)
        store = PrivateFerretDB(free_port(), BASE / "ferretdb-state", BASE / "ferretdb.log")
        suite = cls(BASE, kafka, store, proxy_ports, soak_seconds=soak_seconds)
        try:
            t0 = time.monotonic()
            kafka.start()
            store.start(timeout=60)
            print(
                f"suite: broker {kafka.bootstrap} and FerretDB {store.uri} up in "
                f"{time.monotonic() - t0:.0f} s",
                flush=True,
            )
            yield suite
        finally:
            if suite.toxiproxy is not None:
                suite.toxiproxy.stop()
            kafka.stop()
            store.stop()

    def mongo(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.store.uri, serverSelectionTimeoutMS=10_000)


@dataclass
class Stage:
    """One scenario's topics, database and service processes."""

    name: str
    suite: Suite
    bootstrap: str  # direct, for the checker
    env: dict[str, str]
    settings: CommonSettings
    log_dir: Path
    db: Database[Any]
    clock: Clock = field(default_factory=Clock)
    processes: list[ServiceProcess] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def command_api(self, **overrides: str) -> ServiceProcess:
        proc = services.command_api_process({**self.env, **overrides}, free_port(), self.log_dir)
        self.processes.append(proc)
        return proc.start(timeout=START_TIMEOUT)

    def query_api(self, **overrides: str) -> ServiceProcess:
        proc = services.query_api_process({**self.env, **overrides}, free_port(), self.log_dir)
        self.processes.append(proc)
        return proc.start(timeout=START_TIMEOUT)

    def projector(self, **overrides: str) -> ServiceProcess:
        proc = services.projector_process({**self.env, **overrides}, free_port(), self.log_dir)
        self.processes.append(proc)
        return proc.start(timeout=START_TIMEOUT)

    def load(self, api: ServiceProcess, **kw: Any) -> Load:
        url = api.health_url.rsplit("/", 1)[0]
        kw.setdefault("prefix", self.name)
        return Load(url, self.clock, self.log_dir / "requests.jsonl", **kw)

    def window(self, label: str) -> Window:
        w = Window(label, self.clock.now())
        self.windows.append(w)
        return w

    def end(self, w: Window) -> BacklogWatch:
        w.end = self.clock.now()
        return self.backlog()

    def backlog(self) -> BacklogWatch:
        s = self.settings
        return BacklogWatch(
            self.db, self.bootstrap, s.commands_topic, s.commands_partitions
        ).start()

    def count(self, load: Load) -> Counts:
        s = self.settings
        return count(
            load.attempts,
            self.db,
            self.bootstrap,
            s.commands_topic,
            s.commands_partitions,
            self.windows,
        )

    def finish(self, row: Row, load: Load, backlog: BacklogWatch | None, tail: float = 10) -> None:
        """Keep the load on for ``tail`` s, stop it, retry what was not confirmed, count."""
        time.sleep(tail)
        load.stop()
        left = load.retry_unconfirmed()
        if left:
            row.notes.append(f"{left} requests still unconfirmed after 30 retry rounds")
        if backlog is not None:
            row.lag0 = backlog.wait()
        row.counts = self.count(load)

    def log_errors(self) -> dict[str, int]:
        """ERROR lines per service log of this stage."""
        out: dict[str, int] = {}
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            out[path.name] = text.count('"level": "ERROR"') + text.count("Traceback (most recent")
        return out


@contextlib.contextmanager
def topics_with_retry(
    bootstrap: str, uri: str, config: dict[str, str]
) -> Iterator[tuple[CommonSettings, dict[str, str]]]:
    """own_topics, tried again when a just-created topic is not yet known to the broker asked
    about its configuration (seen on the 3-node cluster right after a node restart)."""
    for attempt in range(3):
        try:
            manager = own_topics(bootstrap, uri, **config)
            entered = manager.__enter__()
        except KafkaException:
            if attempt == 2:
                raise
            time.sleep(3)
            continue
        try:
            yield entered
        finally:
            manager.__exit__(None, None, None)
        return


@contextlib.contextmanager
def stage(suite: Suite, name: str, kafka: OwnKafka | None = None, **config: str) -> Iterator[Stage]:
    kafka = kafka or suite.kafka
    log_dir = suite.base / name
    log_dir.mkdir(parents=True, exist_ok=True)
    mongo = suite.mongo()
    extra = {} if len(kafka.nodes) == 1 else {"REPLICATION_FACTOR": "3", "MIN_INSYNC_REPLICAS": "2"}
    with topics_with_retry(
        kafka.bootstrap, suite.store.uri, {**SERVICE_ENV, **AUTH_ENV, **extra, **config}
    ) as (
        settings,
        env,
    ):
        st = Stage(
            name, suite, kafka.bootstrap, env, settings, log_dir, mongo[settings.mongodb_database]
        )
        try:
            yield st
        finally:
            for proc in reversed(st.processes):
                with contextlib.suppress(Exception):
                    proc.stop(timeout=20)
            with contextlib.suppress(Exception):
                mongo.drop_database(settings.mongodb_database)
            mongo.close()


def sample(until: Callable[[], bool], every: float, probe: Callable[[], Any]) -> list[Any]:
    out = []
    while not until():
        out.append(probe())
        time.sleep(every)
    return out


def readyz(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=3, headers=HEADERS).status_code
    except httpx.HTTPError:
        return 0


@dataclass
class ReadySampler:
    """/readyz of some processes every ``every`` s, on the scenario clock."""

    clock: Clock
    urls: dict[str, str]
    every: float = 0.5
    samples: list[tuple[float, str, int, float]] = field(default_factory=list)  # sent, answered
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ReadySampler:
        def run(name: str, url: str) -> None:
            while not self.stop_event.wait(self.every):
                sent = self.clock.now()
                code = readyz(url)
                self.samples.append((sent, name, code, self.clock.now()))

        for name, url in self.urls.items():
            t = threading.Thread(target=run, args=(name, url), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(10)

    def between(self, name: str, start: float, end: float) -> list[int]:
        """Answers to the probes sent after ``start`` and answered before ``end``."""
        return [c for t, n, c, a in self.samples if n == name and start <= t and a <= end]

    def last(self, name: str) -> int | None:
        codes = [code for _t, n, code, _a in self.samples if n == name]
        return codes[-1] if codes else None


def base_url(proc: ServiceProcess) -> str:
    return proc.health_url.rsplit("/", 1)[0]
