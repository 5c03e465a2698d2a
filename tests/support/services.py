"""Finding the real Kafka and store for tests, and running the service processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.auth import operator_headers

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class ServiceMissing(RuntimeError):
    pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def run_infra(script: str, *args: str) -> None:
    result = subprocess.run(
        [str(REPO / "infra" / script), *args], capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise ServiceMissing(
            f"infra/{script} {' '.join(args)} failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS, else a testcontainers Kafka, else the local broker from infra/."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    if not port_open("127.0.0.1", 9092):
        run_infra("kafka.sh", "start")
    yield "localhost:9092"


@contextlib.contextmanager
def mongodb_uri() -> Iterator[str]:
    """MONGODB_URI, else a testcontainers MongoDB, else the local FerretDB store from infra/."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    if docker_engine_answers():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7") as mongo:
            yield mongo.get_connection_url()
        return
    if not port_open("127.0.0.1", 27017):
        run_infra("store.sh", "start")
    yield "mongodb://127.0.0.1:27017"


@dataclass
class ServiceProcess:
    name: str
    args: list[str]
    env: dict[str, str]
    health_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, env={**os.environ, **self.env}, stdout=log, stderr=log, cwd=REPO
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy after {timeout} s:\n{self.log_tail()}")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    @property
    def ready_url(self) -> str:
        """Its /readyz, beside /healthz (needs an operator token)."""
        return self.health_url.replace("/healthz", "/readyz")

    def diagnosis(self, lines: int = 25) -> str:
        """For a failure message: alive or not, /readyz, and its last structured log lines.

        librdkafka's own lines (starting with %) are left out: during a Kafka outage
        they are hundreds of connection refusals that hide what the service said.
        """
        if self.process is None:
            state = "never started"
        elif self.process.poll() is None:
            state = f"running (pid {self.process.pid})"
        else:
            state = f"EXITED with code {self.process.returncode}"
        try:
            answer = httpx.get(self.ready_url, headers=operator_headers(), timeout=5)
            readiness = f"{answer.status_code} {answer.text[:600]}"
        except httpx.HTTPError as exc:
            readiness = f"no answer ({exc})"
        said = [
            line[:400]
            for line in self.log_tail(400_000).splitlines()
            if line.strip() and not line.startswith("%")
        ]
        return (
            f"{self.name}: {state}; /readyz: {readiness}\n"
            f"last {lines} lines of {self.log_path} (librdkafka lines left out):\n"
            + "\n".join(said[-lines:])
        )


def python_bin() -> str:
    return sys.executable


def command_api_process(env: dict[str, str], port: int, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(
        "command_api",
        [
            python_bin(),
            "-m",
            "uvicorn",
            "command_api.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-server-header",
            "--timeout-graceful-shutdown",
            "30",
        ],
        env,
        f"http://127.0.0.1:{port}/healthz",
        log_dir / f"command_api-{port}.log",
    )


def query_api_process(env: dict[str, str], port: int, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(
        "query_api",
        [
            python_bin(),
            "-m",
            "uvicorn",
            "query_api.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-server-header",
        ],
        env,
        f"http://127.0.0.1:{port}/healthz",
        log_dir / f"query_api-{port}.log",
    )


def projector_process(env: dict[str, str], port: int, log_dir: Path) -> ServiceProcess:
    return ServiceProcess(
        "projector",
        [python_bin(), "-m", "projector.cli", "run"],
        {**env, "HTTP_PORT": str(port)},
        f"http://127.0.0.1:{port}/healthz",
        log_dir / f"projector-{port}.log",
    )
