"""What `make bench` runs against: the `make up` stack (the product) and its own peer processes.

The product is measured on the shared stack's ports (command API :8000, query
API :8001, projector :8002); every peer and every extra process of the bench
runs on a free port of its own, with its own topic or database, removed at
the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from servicekit.settings import CommonSettings
from tests.support.projector_log import high_watermarks
from tests.support.projector_runtime import caught_up, positions
from tests.support.services import REPO, free_port

RUN_DIR = REPO / ".infra" / "run"
PRODUCT = {"command-api": 8000, "query-api": 8001, "projector": 8002}
DEFAULT_FLAGS = ["--timeout-graceful-shutdown", "10"]


@dataclass(frozen=True)
class Stack:
    """The product as the bench sees it: the `make up` stack, or one of its own (--own-stack)."""

    settings: CommonSettings
    command_url: str = "http://127.0.0.1:8000"
    query_url: str = "http://127.0.0.1:8001"
    projector_url: str = "http://127.0.0.1:8002"
    # service -> pid when the bench started the services itself (else the make up pid files)
    pids: dict[str, int] = field(default_factory=dict)

    def pid(self, service: str) -> int | None:
        return self.pids.get(service) or service_pid(service)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap_servers

    @property
    def mongodb_uri(self) -> str:
        return self.settings.mongodb_uri


CALLERS = 64  # distinct callers (token subs): the per-caller write limit stays out of the way


def dev_jwks() -> Path | None:
    """The JWKS file the `make up` services verify tokens with (their AUTH_JWKS_FILE)."""
    pid = service_pid("command-api")
    with contextlib.suppress(OSError):
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(b"AUTH_JWKS_FILE="):
                return Path(entry.split(b"=", 1)[1].decode())
    default = REPO / ".infra" / "auth" / "jwks.json"
    return default if default.exists() else None


def bearer_tokens(count: int = CALLERS) -> list[str]:
    """`Bearer <JWT>` for ``count`` callers with write and read scopes, signed with the dev key.

    `make up` verifies tokens with the development key pair in .infra/auth/ unless
    AUTH_* settings say otherwise; with other settings the bench cannot mint tokens.
    """
    from servicekit.auth import READ, WRITE
    from servicekit.mint_token import DEV_PRIVATE_KEY, load_private_key, mint

    if not DEV_PRIVATE_KEY.exists():
        raise RuntimeError(
            f"no development signing key at {DEV_PRIVATE_KEY}: `make up` creates it when no "
            "AUTH_* setting is given; the bench mints its callers' tokens with it"
        )
    key, algorithm, kid = load_private_key(DEV_PRIVATE_KEY)
    audience, issuer = os.environ.get("AUTH_AUDIENCE"), os.environ.get("AUTH_ISSUER")
    return [
        "Bearer "
        + mint(
            f"bench-{n}",
            [WRITE, READ],
            key,
            algorithm,
            kid=kid,
            ttl_seconds=6 * 3600,
            audience=audience,
            issuer=issuer,
        )
        for n in range(count)
    ]


def healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    return False


def ensure_stack() -> Stack:
    """The `make up` stack, started with `make up` when one of its services does not answer."""
    urls = [f"http://127.0.0.1:{p}" for p in PRODUCT.values()]
    if not all(healthy(u) for u in urls):
        print("bench: the make up stack is not (all) running: starting it with `make up`")
        subprocess.run(["make", "--no-print-directory", "up"], cwd=REPO, check=True)
    # the services read .env in the repository: so does this
    cwd = Path.cwd()
    os.chdir(REPO)
    try:
        settings = CommonSettings.model_validate({})
    finally:
        os.chdir(cwd)
    return Stack(settings)


@contextlib.contextmanager
def own_stack(shared: Stack, jwks: str, flags: list[str], log_dir: Path) -> Iterator[Stack]:
    """The three services of this working tree on free ports, own topics and database.

    Same broker and store as `make up`; removed afterwards. For measuring code
    that the running `make up` stack does not run yet.
    """
    from confluent_kafka.admin import AdminClient

    from infra.topics import ensure_topics, topic_specs

    suffix = os.urandom(4).hex()
    ports = {name: free_port() for name in PRODUCT}
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": shared.bootstrap,
        "MONGODB_URI": shared.mongodb_uri,
        "MONGODB_DATABASE": f"bench_stack_{suffix}",
        "COMMANDS_TOPIC": f"bench-{suffix}.commands",
        "DLQ_TOPIC": f"bench-{suffix}.commands.dlq",
        "COMMANDS_PARTITIONS": str(shared.settings.commands_partitions),
        "CONSUMER_GROUP": f"bench-{suffix}-projector",
        "AUTH_JWKS_FILE": jwks,
        "QUERY_API_BASE_URL": f"http://127.0.0.1:{ports['query-api']}",
        "HTTP_PORT": str(ports["projector"]),
        "LOG_LEVEL": "INFO",
    }
    settings = CommonSettings.model_validate({k.lower(): v for k, v in env.items()})
    admin = AdminClient({"bootstrap.servers": shared.bootstrap})
    ensure_topics(admin, topic_specs(settings), timeout=60)
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1"]
    processes = {
        "command-api": [*uvicorn, "--port", str(ports["command-api"]), "command_api.app:app"],
        "query-api": [*uvicorn, "--port", str(ports["query-api"]), "query_api.app:app"],
        "projector": [sys.executable, "-m", "projector.cli", "run"],
    }
    started: dict[str, Process] = {}
    try:
        for name, args in processes.items():
            extra = flags if name != "projector" else []
            started[name] = Process(
                name,
                [*args, *extra],
                env,
                f"http://127.0.0.1:{ports[name]}",
                log_dir / f"own-{name}.log",
            ).start()
        print(
            f"bench: own stack of this working tree on ports {ports}, database "
            f"{env['MONGODB_DATABASE']}"
        )
        yield Stack(
            settings,
            f"http://127.0.0.1:{ports['command-api']}",
            f"http://127.0.0.1:{ports['query-api']}",
            f"http://127.0.0.1:{ports['projector']}",
            {name: p.pid for name, p in started.items()},
        )
    finally:
        for p in reversed(list(started.values())):
            p.stop()
        with contextlib.suppress(Exception):
            admin.delete_topics([settings.commands_topic, settings.dlq_topic])
        client: MongoClient[dict[str, Any]] = MongoClient(shared.mongodb_uri)
        with contextlib.suppress(Exception):
            client.drop_database(settings.mongodb_database)
        client.close()


def service_pid(name: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((RUN_DIR / f"{name}.pid").read_text().strip())
    return None


def product_uvicorn_flags() -> list[str]:
    """The command API's uvicorn flags as `make up` started it (host, port and app left out)."""
    pid = service_pid("command-api")
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return list(DEFAULT_FLAGS)
    words = [a.decode() for a in args if a]
    try:
        start = next(i for i, w in enumerate(words) if w.endswith(":app")) + 1
    except StopIteration:
        return list(DEFAULT_FLAGS)
    flags, skip = [], False
    for word in words[start:]:
        if skip:
            skip = False
        elif word in ("--host", "--port"):
            skip = True
        elif not word.startswith(("--host=", "--port=")):
            flags.append(word)
    return flags


def server_stack(flags: list[str]) -> str:
    """What uvicorn picks with these flags: event loop and HTTP parser."""

    def flag(name: str) -> str:
        for i, word in enumerate(flags):
            if word == f"--{name}" and i + 1 < len(flags):
                return flags[i + 1]
            if word.startswith(f"--{name}="):
                return word.split("=", 1)[1]
        return "auto"

    loop, http = flag("loop"), flag("http")
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn, 1 worker, loop {loop}, http {http}"


def stale_product(package: str, service: str) -> list[str]:
    """Source files of ``package`` changed after ``service`` started (it runs older code)."""
    pid = service_pid(service)
    if pid is None:
        return []
    try:
        started = Path(f"/proc/{pid}").stat().st_mtime
    except OSError:
        return []
    return sorted(
        str(p.relative_to(REPO))
        for p in (REPO / package).rglob("*.py")
        if p.stat().st_mtime > started
    )


@dataclass
class Process:
    """A process of the bench in its own session: stopped with its children."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None  # base URL answering GET /healthz
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Process:
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.popen = subprocess.Popen(
            self.args,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=log,
            cwd=REPO,
            start_new_session=True,
        )
        if self.health_url is None:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early (log {self.log_path})")
            if healthy(self.health_url):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {timeout} s (log {self.log_path})")

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self, timeout: float = 20) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextlib.contextmanager
def uvicorn_server(app: str, flags: list[str], env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """``app`` under uvicorn with the product's flags on a free port; yields its URL."""
    port = free_port()
    name = app.split(":")[0].rsplit(".", 1)[-1]
    args = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    proc = Process(name, [*args, *flags], env, f"http://127.0.0.1:{port}", log_dir / f"{name}.log")
    with proc.start():
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def trivial_server(processes: int, log_dir: Path) -> Iterator[str]:
    port = free_port()
    args = [sys.executable, "-m", "tests.benchmarks.peers.trivial", str(port), str(processes)]
    proc = Process("trivial", args, log_path=log_dir / "trivial.log").start()
    try:
        deadline = time.monotonic() + 20
        while not _answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError("the trivial server did not answer within 20 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _answers(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1).status_code == 202
    return False


def wait_projector_idle(stack: Stack, timeout: float = 300) -> float:
    """Wait until the shared projector has applied everything on its topic; returns seconds."""
    started = time.monotonic()
    s = stack.settings
    client: MongoClient[dict[str, Any]] = MongoClient(s.mongodb_uri)
    try:
        db = client[s.mongodb_database]
        ends = high_watermarks(s.kafka_bootstrap_servers, s.commands_topic, s.commands_partitions)
        while not caught_up(db, ends):
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"the shared projector did not catch up within {timeout} s "
                    f"(end {ends}, at {positions(db)}): is `projector run` of make up alive?"
                )
            time.sleep(0.2)
    finally:
        client.close()
    return time.monotonic() - started


class RssSampler:
    """Samples a process's resident memory (VmRSS) on a thread: [(seconds, MiB)]."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = rss_mib(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic() - self._t0, rss))
            self._stop.wait(self.interval)


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
