"""infra/docker-compose.yml cannot run here (no Docker engine): check it against the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from servicekit.settings import CommonSettings

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "docker-compose.yml"


def load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_and_ports_match_the_contract() -> None:
    services = load()["services"]
    assert {"kafka", "mongo", "command-api", "query-api", "projector"} <= set(services)
    expected_ports = {
        "kafka": "9092:9092",
        "mongo": "27017:27017",
        "command-api": "8000:8000",
        "query-api": "8001:8001",
        "projector": "8002:8002",
    }
    for name, port in expected_ports.items():
        assert port in services[name]["ports"], name


def test_services_get_the_contracts_environment_and_valid_values() -> None:
    services = load()["services"]
    for name in ("command-api", "query-api", "projector"):
        env = services[name]["environment"]
        for variable in (
            "KAFKA_BOOTSTRAP_SERVERS",
            "MONGODB_URI",
            "MONGODB_DATABASE",
            "COMMANDS_TOPIC",
        ):
            assert variable in env, (name, variable)
        # authentication is on: a verification key is configured, never AUTH_DISABLED
        assert {"AUTH_JWKS_FILE", "AUTH_PUBLIC_KEY_FILES", "AUTH_HS256_SECRET"} & set(env), name
        assert str(env.get("AUTH_DISABLED", "false")).lower() == "false", name
        settings = CommonSettings(
            **{k.lower(): v for k, v in env.items() if k.lower() in CommonSettings.model_fields}
        )
        assert settings.commands_topic == "action-items.commands"
        assert settings.mongodb_database == "actionitems"


def test_kafka_is_kraft_and_mongo_a_replica_set() -> None:
    services = load()["services"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--replSet" in services["mongo"]["command"]
    assert services["projector"]["command"] == ["projector", "run"]
