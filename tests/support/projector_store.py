"""A private FerretDB in front of the shared PostgreSQL, to take the store away from a projector.

The shared store (127.0.0.1:27017) must never be stopped: other tests use it.
A second FerretDB process on a free port, on the same PostgreSQL + DocumentDB,
serves the very same data, so a projector pointed at it can lose its store
(SIGKILL, or SIGSTOP for a store that hangs) while the query API and the test
keep reading through the shared one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from servicekit.store_types import StoreClient
from tests.support.services import REPO, free_port

FERRETDB_BIN = Path(os.environ.get("FERRETDB_BIN", REPO / ".infra" / "store" / "bin" / "ferretdb"))


def postgresql_url() -> str:
    """The PostgreSQL the shared store runs on (infra/store.sh: STORE_PG_PORT, default 54329)."""
    if os.environ.get("FERRETDB_POSTGRESQL_URL"):
        return os.environ["FERRETDB_POSTGRESQL_URL"]
    port = os.environ.get("STORE_PG_PORT", "54329")
    return f"postgres://postgres@127.0.0.1:{port}/postgres"


@dataclass
class PrivateFerretDB:
    """One FerretDB process of this test's own; stop and start it at will."""

    port: int
    state_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> None:
        if not FERRETDB_BIN.exists():
            raise RuntimeError(
                f"{FERRETDB_BIN} is missing: build the local store with `infra/store.sh build` "
                "(the store-outage tests need a FerretDB of their own)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(FERRETDB_BIN),
                f"--listen-addr=127.0.0.1:{self.port}",
                f"--postgresql-url={postgresql_url()}",
                f"--state-dir={self.state_dir}",
                "--log-level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"private FerretDB exited early:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"private FerretDB not answering after {timeout} s:\n{self.log_tail()}")

    def answers(self) -> bool:
        client: StoreClient = MongoClient(
            self.uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """The store goes away at once: connections are reset, new ones refused."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        """The store hangs: connections are accepted but nothing is answered."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.thaw()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@pytest.fixture
def private_store(mongodb_uri: str, tmp_path: Path) -> Iterator[PrivateFerretDB]:
    """A FerretDB of this test's own over the shared store's PostgreSQL (same data)."""
    if not mongodb_uri.startswith("mongodb://127.0.0.1:27017") and not mongodb_uri.startswith(
        "mongodb://localhost:27017"
    ):
        pytest.fail(
            f"the store-outage tests need the local FerretDB store (MONGODB_URI={mongodb_uri}): "
            "they run a second FerretDB on its PostgreSQL"
        )
    store = PrivateFerretDB(free_port(), tmp_path / "ferretdb-state", tmp_path / "ferretdb.log")
    store.start()
    try:
        yield store
    finally:
        store.stop()
