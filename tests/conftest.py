"""Fixtures on the real services. Under CI a missing service fails the test, never skips it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient

from servicekit.settings import CommonSettings
from servicekit.store_types import StoreClient
from tests.support import services
from tests.support.auth import TRUSTED
from tests.support.command_api import own_topics

# Every service a test starts (process or in-process app) verifies bearer tokens with the test
# key pair (tests/support/auth.py); own_topics() adds the audience and the issuer it checks.
os.environ["AUTH_JWKS_FILE"] = str(TRUSTED.jwks)
os.environ["AUTH_DISABLED"] = "false"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    try:
        with services.kafka_bootstrap() as bootstrap:
            yield bootstrap
    except services.ServiceMissing as exc:
        pytest.fail(f"Kafka is required and could not be started: {exc}")


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    try:
        with services.mongodb_uri() as uri:
            yield uri
    except services.ServiceMissing as exc:
        pytest.fail(f"the MongoDB-wire store is required and could not be started: {exc}")


@pytest.fixture(scope="session")
def mongo(mongodb_uri: str) -> Iterator[StoreClient]:
    client: StoreClient = MongoClient(mongodb_uri, serverSelectionTimeoutMS=10_000)
    client.admin.command("ping")
    yield client
    client.close()


@dataclass
class Stack:
    """One isolated namespace on the real services: its own topics and database."""

    settings: CommonSettings
    env: dict[str, str]
    log_dir: Path


@pytest.fixture
def stack(
    kafka_bootstrap: str, mongodb_uri: str, mongo: StoreClient, tmp_path: Path
) -> Iterator[Stack]:
    with own_topics(kafka_bootstrap, mongodb_uri) as (settings, env):
        yield Stack(settings, env, tmp_path)
    mongo.drop_database(settings.mongodb_database)


@dataclass
class RunningSystem:
    stack: Stack
    command_url: str
    query_url: str
    projector_url: str
    command_api: services.ServiceProcess
    query_api: services.ServiceProcess
    projector: services.ServiceProcess


@pytest.fixture
def system(stack: Stack) -> Iterator[RunningSystem]:
    """The three real service processes on free ports, on this test's topics and database."""
    ports = [services.free_port() for _ in range(3)]
    query_url = f"http://127.0.0.1:{ports[1]}"
    env = {**stack.env, "QUERY_API_BASE_URL": query_url}
    procs = [
        services.command_api_process(env, ports[0], stack.log_dir),
        services.query_api_process(env, ports[1], stack.log_dir),
        services.projector_process(env, ports[2], stack.log_dir),
    ]
    started = []
    try:
        for proc in procs:
            started.append(proc.start())
        yield RunningSystem(
            stack,
            f"http://127.0.0.1:{ports[0]}",
            query_url,
            f"http://127.0.0.1:{ports[2]}",
            *procs,
        )
    finally:
        for proc in reversed(started):
            proc.stop()
