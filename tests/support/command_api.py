"""Running the command API process (and the 3-node test cluster) for the command API's tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from infra.topics import ensure_topics, topic_specs
from servicekit.settings import CommonSettings
from tests.support import services
from tests.support.auth import auth_env, caller_headers, operator_headers

CLUSTER_BOOTSTRAP = "localhost:19092,localhost:19094,localhost:19096"
KAFKA_SH = services.REPO / "infra" / "kafka.sh"
RUN_DIR = services.REPO / ".infra" / "run"


@dataclass
class CommandApi:
    """A running command API process on its own port."""

    url: str
    process: services.ServiceProcess
    env: dict[str, str]

    def post(self, body: object, timeout: float = 15, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/action-items", json=body, headers=_headers(headers), timeout=timeout
        )

    def patch(self, item: str, body: object, timeout: float = 15, **headers: str) -> httpx.Response:
        return httpx.patch(
            f"{self.url}/action-items/{item}",
            json=body,
            headers=_headers(headers),
            timeout=timeout,
        )

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when the series does not exist yet)."""
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        page = httpx.get(f"{self.url}/metrics", headers=operator_headers(), timeout=5)
        for line in page.text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if _normalise(series) == wanted:
                return float(value)
        return 0.0


def _normalise(series: str) -> str:
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    labels = sorted(p for p in rest.rstrip("}").split(",") if p)
    return name + "{" + ",".join(labels) + "}"


def _headers(named: dict[str, str]) -> dict[str, str]:
    """Keyword names to header names: idempotency_key -> Idempotency-Key, x_client_id -> X-...

    Without an ``authorization`` keyword the request carries a token whose sub is the
    ``x_client_id`` given (else 'anonymous'): the caller a test names is the one that writes.
    """
    out = {}
    for name, value in named.items():
        out["-".join(part.capitalize() for part in name.split("_"))] = value
    if "Authorization" not in out:
        out.update(caller_headers(named.get("x_client_id", "anonymous")))
    return out


def start_command_api(env: dict[str, str], log_dir: Path, **overrides: str) -> CommandApi:
    port = services.free_port()
    full_env = {**env, **overrides}
    process = services.command_api_process(full_env, port, log_dir).start(timeout=60)
    return CommandApi(f"http://127.0.0.1:{port}", process, full_env)


@contextlib.contextmanager
def running_command_api(
    env: dict[str, str], log_dir: Path, **overrides: str
) -> Iterator[CommandApi]:
    api = start_command_api(env, log_dir, **overrides)
    try:
        yield api
    finally:
        api.process.stop()


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", headers=operator_headers(), timeout=5).status_code == 200
    return False


# -- the 3-node KRaft cluster of infra/kafka.sh (fault tests only) -------------


def kafka_sh(*args: str, timeout: float = 240) -> str:
    result = subprocess.run(
        [str(KAFKA_SH), *args], capture_output=True, text=True, timeout=timeout, cwd=services.REPO
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"infra/kafka.sh {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result.stdout


@dataclass
class Cluster:
    """The 3-node test cluster: start, stop, and freeze (SIGSTOP) its nodes."""

    bootstrap: str = CLUSTER_BOOTSTRAP
    frozen: list[int] = field(default_factory=list)

    def start(self) -> None:
        kafka_sh("start-cluster")

    def stop(self) -> None:
        self.thaw()
        kafka_sh("stop-cluster")

    def pids(self) -> list[int]:
        pids = []
        for n in (1, 2, 3):
            path = RUN_DIR / f"kafka-cluster-{n}.pid"
            pids.append(int(path.read_text().strip()))
        return pids

    def freeze(self) -> None:
        """SIGSTOP every node: connections stay open, requests get no answer (a stalled log)."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)
            self.frozen.append(pid)

    def thaw(self) -> None:
        while self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.frozen.pop(), signal.SIGCONT)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})


@contextlib.contextmanager
def own_topics(
    bootstrap: str, mongodb_uri: str = "mongodb://127.0.0.1:27017", **config: str
) -> Iterator[tuple[CommonSettings, dict[str, str]]]:
    """A fresh command/DLQ topic pair on ``bootstrap`` (deleted afterwards) and its env.

    On the test cluster pass REPLICATION_FACTOR=3, MIN_INSYNC_REPLICAS=2.
    """
    suffix = uuid.uuid4().hex[:10]
    # The services verify tokens from tests/support/auth.py, unless the caller brings its own keys.
    auth = {} if any(name.startswith("AUTH_") for name in config) else auth_env()
    env = {
        **auth,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": f"test_{suffix}",
        "COMMANDS_TOPIC": f"test-{suffix}.commands",
        "DLQ_TOPIC": f"test-{suffix}.commands.dlq",
        "COMMANDS_PARTITIONS": "3",
        "CONSUMER_GROUP": f"test-{suffix}-projector",
        "LOG_LEVEL": "INFO",
        **config,
    }
    settings = CommonSettings.model_validate(
        {k.lower(): v for k, v in env.items() if k.lower() in CommonSettings.model_fields}
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    ensure_topics(admin, topic_specs(settings), timeout=60)
    try:
        yield settings, env
    finally:
        with contextlib.suppress(Exception):
            for future in admin.delete_topics(
                [settings.commands_topic, settings.dlq_topic], operation_timeout=30
            ).values():
                future.result(timeout=30)
