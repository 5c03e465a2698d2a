"""The codec writes the same bytes, and the command API derives the same ids, as before.

The golden data in tests/unit/fixtures/command_golden.json was written by the
code of commit aff64b9, before the codec and the request -> command mapping
went by field name (see tests/unit/golden_commands.py). A failure here means a
change of the wire format or of commandIds: records already on the log, or a
keyed retry across the upgrade, would no longer match.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from command_api.payloads import create_payload, update_payload
from command_api.requests import CreateActionItemRequest, UpdateActionItemRequest
from domain.commands import CommandEnvelope
from domain.identity import build_command
from schemas.codec import CommandCodec, schema_versions
from tests.unit.golden_commands import FIXTURE, envelope_from, plain


@cache
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def test_the_golden_data_covers_every_schema_version_and_both_payloads() -> None:
    cases = golden()["codec"]
    assert len(cases) >= 100
    assert {v for case in cases for v in case["wire"]} == {
        str(v.version) for v in schema_versions()
    }
    assert {case["command"]["payload"]["type"] for case in cases} == {
        "CreateActionItem",
        "UpdateActionItem",
    }


@pytest.mark.parametrize("index", range(len(golden()["codec"])))
def test_every_writer_version_encodes_the_same_bytes_and_reads_back(index: int) -> None:
    case = golden()["codec"][index]
    command = envelope_from(case["command"])
    reader = CommandCodec()
    for version in schema_versions():
        wire = case["wire"][str(version.version)]
        value = bytes.fromhex(wire["hex"])
        assert CommandCodec(writer=version).encode(command) == value, (
            f"v{version.version} bytes changed"
        )
        assert plain(reader.decode(value)) == {**case["command"], **wire["decodedDiffers"]}, (
            f"a v{version.version} record reads differently"
        )


def command_for(case: dict[str, Any]) -> CommandEnvelope:
    if case["kind"] == "create":
        body = CreateActionItemRequest.model_validate(case["request"])
        return build_command(
            create_payload(body),
            body.model_dump(mode="json"),
            action_item_id=None,
            caller=case["caller"],
            idempotency_key=case["key"],
            expected_version=None,
            correlation_id="corr",
            client_id=case["clientId"],
        )
    patch = UpdateActionItemRequest.model_validate(case["request"])
    return build_command(
        update_payload(patch),
        patch.model_dump(mode="json", include=patch.model_fields_set),
        action_item_id="11111111-1111-4111-8111-111111111111",
        caller=case["caller"],
        idempotency_key=case["key"],
        expected_version=case["expectedVersion"],
        correlation_id="corr",
        client_id=case["clientId"],
    )


@pytest.mark.parametrize("index", range(len(golden()["identity"])))
def test_a_request_gets_the_payload_hash_and_ids_it_got_before(index: int) -> None:
    case = golden()["identity"][index]
    command = command_for(case)
    assert plain(command.payload) == case["payload"]
    assert command.payload_hash == case["payloadHash"]
    if case["commandId"] is not None:
        assert command.command_id == case["commandId"]
    if case["actionItemId"] is not None:
        assert command.action_item_id == case["actionItemId"]
