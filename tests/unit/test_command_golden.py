"""The codec writes the same bytes, and the command API derives the same ids, as before.

The golden data in tests/unit/fixtures/command_golden.json was written by the
code of commit aff64b9, before the codec and the request -> command mapping
went by field name (see tests/unit/golden_commands.py). A failure here means a
change of the wire format or of commandIds: records already on the log, or a
keyed retry across the upgrade, would no longer match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import pytest

from command_api.payloads import create_payload, update_payload
from command_api.requests import CreateActionItemRequest, UpdateActionItemRequest
from domain.commands import CommandEnvelope, CreateActionItem, Payload, UpdateActionItem
from domain.identity import CREATE_FIELDS_ALWAYS_HASHED, build_command, hashed_body
from schemas.codec import (
    PAYLOAD_TYPES,
    CommandCodec,
    SchemaVersion,
    schema_versions,
    writer_schema,
)
from tests.unit.golden_commands import FIXTURE, envelope_from, plain


@cache
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def golden_versions() -> list[SchemaVersion]:
    """The schema versions the golden data was written with (v1..v3); a later version is
    not in it, its bytes being new."""
    written = {v for case in golden()["codec"] for v in case["wire"]}
    return [v for v in schema_versions() if str(v.version) in written]


def as_before(decoded: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """``decoded`` without the payload and envelope fields added after the golden data was
    written, once checked to hold their defaults (what an older record or request means for
    them; the envelope's ``key_owner`` came with schema v4)."""
    payload = dict(decoded["payload"])
    cls = PAYLOAD_TYPES[payload["type"]]
    defaults = {f.name: plain(f.default) for f in fields(cls)}
    for name in set(payload) - set(before["payload"]):
        assert payload.pop(name) == defaults[name], f"{name} is not at its default"
    envelope = {**decoded, "payload": payload}
    if "command_id" in before:
        later = {f.name: plain(f.default) for f in fields(CommandEnvelope) if f.name not in before}
        for name in later:
            assert envelope.pop(name) == later[name], f"{name} is not at its default"
    return envelope


def test_the_golden_data_covers_every_schema_version_and_both_payloads() -> None:
    cases = golden()["codec"]
    assert len(cases) >= 100
    assert [v.version for v in golden_versions()] == [1, 2, 3]
    assert {case["command"]["payload"]["type"] for case in cases} == {
        "CreateActionItem",
        "UpdateActionItem",
    }


@pytest.mark.parametrize("index", range(len(golden()["codec"])))
def test_every_writer_version_encodes_the_same_bytes_and_reads_back(index: int) -> None:
    case = golden()["codec"][index]
    command = envelope_from(case["command"])
    reader = CommandCodec()
    for version in golden_versions():
        wire = case["wire"][str(version.version)]
        value = bytes.fromhex(wire["hex"])
        assert CommandCodec(writer=version).encode(command) == value, (
            f"v{version.version} bytes changed"
        )
        before = {**case["command"], **wire["decodedDiffers"]}
        assert as_before(plain(reader.decode(value)), before) == before, (
            f"a v{version.version} record reads differently"
        )


def command_for(case: dict[str, Any]) -> CommandEnvelope:
    if case["kind"] == "create":
        body = CreateActionItemRequest.model_validate(case["request"])
        return build_command(
            create_payload(body),
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
    assert as_before({"payload": plain(command.payload)}, case) == {"payload": case["payload"]}
    assert command.payload_hash == case["payloadHash"]
    if case["commandId"] is not None:
        assert command.command_id == case["commandId"]
    if case["actionItemId"] is not None:
        assert command.action_item_id == case["actionItemId"]


@pytest.mark.parametrize("cls", [CreateActionItem, UpdateActionItem])
def test_the_writer_schema_and_the_request_name_every_command_field(cls: type[Payload]) -> None:
    """The codec and the request mapping go by name: the three field lists must agree."""
    record = next(
        branch
        for field in writer_schema().parsed["fields"]
        if field["name"] == "payload"
        for branch in field["type"]
        if branch["name"].endswith("." + cls.__name__)
    )
    avro = [f["name"] for f in record["fields"]]
    assert avro == [{"fields_set": "fieldsSet"}.get(f.name, f.name) for f in fields(cls)]
    request = CreateActionItemRequest if cls is CreateActionItem else UpdateActionItemRequest
    assert list(request.model_fields) == [f.name for f in fields(cls) if f.name != "fields_set"]


def test_a_create_field_added_later_is_hashed_only_when_given() -> None:
    @dataclass(frozen=True)
    class Later(CreateActionItem):
        estimate: float | None = None

    base = hashed_body(CreateActionItem(title="x"))
    assert set(base) == set(CREATE_FIELDS_ALWAYS_HASHED)
    assert hashed_body(Later(title="x")) == base
    assert hashed_body(Later(title="x", estimate=0.0)) == {**base, "estimate": 0.0}


def test_an_update_hashes_the_fields_it_sets() -> None:
    patch = UpdateActionItem(fields_set=frozenset({"assignee", "tags"}), tags=("a",))
    assert hashed_body(patch) == {"assignee": None, "tags": ["a"]}
