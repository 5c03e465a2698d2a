"""Kafka brokers of the suite's own: KRaft nodes on free loopback ports, data under .infra/.

The jars are the ones infra/kafka.sh fetched (.infra/kafka/libs). A node listens on
PLAINTEXT (what the checker and the load use directly) and on extra listeners
whose advertised address is a Toxiproxy port, so a client that bootstraps
through a proxy keeps talking through it (Kafka answers metadata with the
addresses of the listener a request came in on).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.support.services import REPO, free_port, run_infra

LIBS = REPO / ".infra" / "kafka" / "libs"
LOG4J = REPO / "infra" / "kafka" / "log4j2.properties"


def ensure_jars() -> None:
    if not list(LIBS.glob("kafka_2.13-*.jar")):
        run_infra("kafka.sh", "fetch")


def _cluster_id() -> str:
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class KafkaNode:
    node_id: int
    data_dir: Path
    port: int
    controller_port: int
    voters: str
    cluster_id: str
    replicas: int
    proxied: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (bind, advertised)
    heap: str = "384m"
    pretouch: bool = False  # touch the whole heap at start: RSS is flat from then on (soak)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def _config(self) -> str:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        for name, (bind, adv) in sorted(self.proxied.items()):
            listeners.append(f"{name}://127.0.0.1:{bind}")
            advertised.append(f"{name}://127.0.0.1:{adv}")
            protocols.append(f"{name}:PLAINTEXT")
        listeners.append(f"CONTROLLER://127.0.0.1:{self.controller_port}")
        rf, isr = (1, 1) if self.replicas == 1 else (3, 2)
        lines = [
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"controller.quorum.voters={self.voters}",
            f"log.dirs={self.data_dir / 'data'}",
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=1",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
        ]
        return "\n".join(lines) + "\n"

    def _java(self, *args: str, heap: str | None = None) -> list[str]:
        return [
            "java",
            f"-Xms{heap or self.heap}",
            f"-Xmx{heap or self.heap}",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            *(["-XX:+AlwaysPreTouch"] if self.pretouch and not heap else []),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.log.file={self.log_path}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{LIBS}/*",
            *args,
        ]

    def format(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "server.properties").write_text(self._config())
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(self.data_dir / "server.properties"),
                heap="256m",
            ),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kafka node {self.node_id}: format failed:\n{result.stdout}\n{result.stderr}"
            )

    def launch(self) -> None:
        """Start the JVM (no waiting); the node keeps its ports and data across restarts."""
        if self.running():
            return
        out = (self.data_dir / "server.out").open("ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self.data_dir / "server.properties")),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        if not self.running():
            return False
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )
        with contextlib.suppress(Exception):
            md = admin.list_topics(timeout=2)
            return self.node_id in md.brokers and md.controller_id is not None
        return False

    def kill(self) -> None:
        """kill -9: no flush, no controlled shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(20)

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def pid(self) -> int | None:
        return self.process.pid if self.running() and self.process is not None else None


@dataclass
class OwnKafka:
    """One broker, or a 3-node cluster (RF 3, min ISR 2), of the suite's own."""

    nodes: list[KafkaNode]
    base_dir: Path

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @classmethod
    def create(
        cls, base_dir: Path, size: int = 1, proxied: dict[str, int] | None = None
    ) -> OwnKafka:
        """``proxied``: listener name -> the Toxiproxy port clients of that listener use."""
        ensure_jars()
        shutil.rmtree(base_dir, ignore_errors=True)
        cid = _cluster_id()
        ports = [(free_port(), free_port()) for _ in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_p, c) in enumerate(ports))
        nodes = []
        for i, (port, cport) in enumerate(ports):
            extra = {name: (free_port(), adv) for name, adv in (proxied or {}).items()}
            nodes.append(
                KafkaNode(
                    i + 1,
                    base_dir / f"node{i + 1}",
                    port,
                    cport,
                    voters,
                    cid,
                    size,
                    extra,
                    heap="512m" if size == 1 else "384m",
                    pretouch=size == 1,
                )
            )
        return cls(nodes, base_dir)

    def start(self, timeout: float = 240) -> None:
        for n in self.nodes:
            n.format()
        for n in self.nodes:
            n.launch()
        self.wait(self.nodes, timeout)

    def start_nodes(self, nodes: list[KafkaNode], timeout: float = 240) -> None:
        for n in nodes:
            n.launch()
        self.wait(nodes, timeout)

    def wait(self, nodes: list[KafkaNode], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        while pending:
            for n in list(pending):
                if not n.running():
                    tail = (
                        n.log_path.read_text(errors="replace")[-3000:]
                        if n.log_path.exists()
                        else ""
                    )
                    raise RuntimeError(f"kafka node {n.node_id} exited during start-up:\n{tail}")
                if n.answers():
                    pending.remove(n)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(
                    f"kafka nodes {[n.node_id for n in pending]} not answering after {timeout} s"
                )
            if pending:
                time.sleep(1)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> leader node id (-1 while none)."""
        md = self.admin().list_topics(topic, timeout=10)
        return {p: int(m.leader) for p, m in md.topics[topic].partitions.items()}

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def pids(self) -> list[int]:
        return [p for p in (n.pid() for n in self.nodes) if p is not None]
