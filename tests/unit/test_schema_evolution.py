"""Schema evolution of the command log: every version ever written stays readable.

Version 2 adds one optional field, ``clientId`` (["null", "string"], default null).
Avro's resolution rules are exercised in both directions: a v1 record read with
the v2 reader gets the field's default, a v2 record read with the v1 reader has
the field skipped. Both writer schemas are found by the fingerprint in the record.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from domain.commands import CommandEnvelope
from schemas.codec import AVRO_DIR, CommandCodec, SchemaVersion, schema_versions, writer_schema
from tests.unit.builders import create, update

# Pinned: a changed v1 fingerprint means someone edited a schema that records on
# the log were written with, and those records could no longer be found.
V1_FINGERPRINT = "706dee72f851757e"
V2_FINGERPRINT = "ba1ee32929da0103"
V3_FINGERPRINT = "d58e9f37d248d1e5"


def version(n: int) -> SchemaVersion:
    return next(v for v in schema_versions() if v.version == n)


def samples() -> list[CommandEnvelope]:
    return [
        create(title="evolve", tags=("a", "b"), dueDate="2026-12-31", assignee="ops"),
        update(title="t2", assignee=None, tags=[], status="done", expected=3, key="k" * 64),
    ]


def with_client(command: CommandEnvelope, client_id: str | None) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=command.command_id,
        action_item_id=command.action_item_id,
        accepted_at=command.accepted_at,
        correlation_id=command.correlation_id,
        payload_hash=command.payload_hash,
        payload=command.payload,
        idempotency_key_hash=command.idempotency_key_hash,
        expected_version=command.expected_version,
        client_id=client_id,
    )


def test_v2_is_the_writer_and_v1_is_kept() -> None:
    assert [v.version for v in schema_versions()][:2] == [1, 2]
    assert writer_schema().version == max(v.version for v in schema_versions())
    assert CommandCodec().writer.version == writer_schema().version
    assert version(1).fingerprint_hex == V1_FINGERPRINT
    assert version(2).fingerprint_hex == V2_FINGERPRINT
    assert version(3).fingerprint_hex == V3_FINGERPRINT


def test_v2_adds_exactly_one_optional_field() -> None:
    def fields(n: int) -> dict[str, Any]:
        raw = json.loads((AVRO_DIR / f"action_item_command.v{n}.avsc").read_text())
        return {f["name"]: f for f in raw["fields"]}

    v1, v2 = fields(1), fields(2)
    assert set(v2) - set(v1) == {"clientId"}
    assert set(v1) <= set(v2)
    assert v2["clientId"]["type"] == ["null", "string"]
    assert v2["clientId"]["default"] is None
    assert all(v1[name] == v2[name] for name in v1)


@pytest.mark.parametrize("command", samples(), ids=["create", "update"])
def test_a_v1_record_decodes_with_the_v2_reader_and_gets_the_default(
    command: CommandEnvelope,
) -> None:
    written = CommandCodec(writer=version(1)).encode(with_client(command, "ignored-by-v1"))
    assert written[2:10] == version(1).fingerprint

    datum = CommandCodec(reader=version(2)).decode_datum(written)
    assert datum["clientId"] is None
    decoded = CommandCodec(reader=version(2)).decode(written)
    assert decoded == with_client(command, None)
    assert decoded.extra == {}


@pytest.mark.parametrize("command", samples(), ids=["create", "update"])
def test_a_v2_record_decodes_with_the_v1_reader_and_the_field_is_skipped(
    command: CommandEnvelope,
) -> None:
    written = CommandCodec(writer=version(2)).encode(with_client(command, "team-a"))
    assert written[2:10] == version(2).fingerprint
    assert CommandCodec(reader=version(2)).decode(written).client_id == "team-a"

    v1_reader = CommandCodec(reader=version(1))
    datum = v1_reader.decode_datum(written)
    assert "clientId" not in datum
    assert v1_reader.decode(written) == with_client(command, None)


def test_fingerprints_differ_and_each_finds_its_writer() -> None:
    v1, v2 = version(1), version(2)
    assert v1.fingerprint != v2.fingerprint
    command = with_client(samples()[0], "team-b")
    from_v1 = CommandCodec(writer=v1).encode(command)
    from_v2 = CommandCodec(writer=v2).encode(command)
    # The datum bytes differ (v2 carries the union branch of clientId), so only the
    # fingerprint can tell the reader which writer schema to resolve from.
    assert from_v1[10:] != from_v2[10:]
    reader = CommandCodec()  # knows every version under schemas/avro
    assert reader.decode(from_v1).client_id is None
    assert reader.decode(from_v2).client_id == "team-b"
    # A reader that knows only v2 cannot read a v1 record: the fingerprint is what finds it.
    only_v2 = CommandCodec(writer=v2, reader=v2, known=(v2,))
    with pytest.raises(ValueError, match="unknown writer schema fingerprint"):
        only_v2.decode(from_v1)


def test_every_newer_version_reads_every_older_one() -> None:
    command = with_client(samples()[1], "c")
    for old, new in itertools.combinations(schema_versions(), 2):
        written = CommandCodec(writer=old).encode(command)
        decoded = CommandCodec(reader=new).decode(written)
        assert decoded.command_id == command.command_id, (old.version, new.version)
        assert decoded.payload == command.payload


# -- version 3: the authenticated caller ---------------------------------------------


def with_caller(
    command: CommandEnvelope, caller: str | None, client: str | None
) -> CommandEnvelope:
    return CommandEnvelope(**{**vars(with_client(command, client)), "caller": caller})


def test_v3_adds_exactly_one_optional_field() -> None:
    def fields(n: int) -> dict[str, Any]:
        raw = json.loads((AVRO_DIR / f"action_item_command.v{n}.avsc").read_text())
        return {f["name"]: f for f in raw["fields"]}

    v2, v3 = fields(2), fields(3)
    assert set(v3) - set(v2) == {"caller"}
    assert v3["caller"]["type"] == ["null", "string"] and v3["caller"]["default"] is None
    # every v2 field unchanged but for its doc
    strip = lambda f: {k: v for k, v in f.items() if k != "doc"}  # noqa: E731
    assert all(strip(v2[name]) == strip(v3[name]) for name in v2)


@pytest.mark.parametrize("command", samples(), ids=["create", "update"])
def test_v1_and_v2_records_decode_with_the_v3_reader_without_a_caller(
    command: CommandEnvelope,
) -> None:
    reader = CommandCodec(reader=version(3))
    from_v1 = CommandCodec(writer=version(1)).encode(with_caller(command, "sub-x", "team"))
    from_v2 = CommandCodec(writer=version(2)).encode(with_caller(command, "sub-x", "team"))
    assert reader.decode(from_v1) == with_caller(command, None, None)
    assert reader.decode(from_v2) == with_caller(command, None, "team")


@pytest.mark.parametrize("command", samples(), ids=["create", "update"])
def test_a_v3_record_keeps_the_caller_and_older_readers_skip_it(command: CommandEnvelope) -> None:
    written = CommandCodec(writer=version(3)).encode(with_caller(command, "alice", "team-a"))
    assert written[2:10] == version(3).fingerprint
    assert CommandCodec().decode(written) == with_caller(command, "alice", "team-a")
    assert CommandCodec(reader=version(2)).decode(written) == with_caller(command, None, "team-a")
    assert CommandCodec(reader=version(1)).decode(written) == with_caller(command, None, None)


# -- version 4: the key registry's verdict (keyOwner) ---------------------------------


def with_owner(command: CommandEnvelope, owner: str | None) -> CommandEnvelope:
    return CommandEnvelope(**{**vars(with_caller(command, "alice", "team-a")), "key_owner": owner})


def test_v4_adds_exactly_one_optional_field_and_is_the_writer() -> None:
    def fields(n: int) -> dict[str, Any]:
        raw = json.loads((AVRO_DIR / f"action_item_command.v{n}.avsc").read_text())
        return {f["name"]: f for f in raw["fields"]}

    v3, v4 = fields(3), fields(4)
    assert set(v4) - set(v3) == {"keyOwner"}
    assert v4["keyOwner"]["type"] == ["null", "string"] and v4["keyOwner"]["default"] is None
    strip = lambda f: {k: v for k, v in f.items() if k != "doc"}  # noqa: E731
    assert all(strip(v3[name]) == strip(v4[name]) for name in v3)
    assert writer_schema().version == 4


@pytest.mark.parametrize("command", samples(), ids=["create", "update"])
def test_older_records_decode_with_the_v4_reader_without_a_key_owner(
    command: CommandEnvelope,
) -> None:
    reader = CommandCodec(reader=version(4))
    owned = with_owner(command, "owner-1")
    for old in (1, 2, 3):
        decoded = reader.decode(CommandCodec(writer=version(old)).encode(owned))
        assert decoded.key_owner is None, old
        assert decoded.command_id == command.command_id and decoded.payload == command.payload
    from_v3 = CommandCodec(writer=version(3)).encode(owned)
    assert reader.decode(from_v3) == with_owner(command, None)


@pytest.mark.parametrize("command", samples(), ids=["create", "update"])
def test_a_v4_record_keeps_the_key_owner_and_older_readers_skip_it(
    command: CommandEnvelope,
) -> None:
    written = CommandCodec().encode(with_owner(command, "owner-1"))
    assert written[2:10] == version(4).fingerprint
    assert CommandCodec().decode(written) == with_owner(command, "owner-1")
    assert CommandCodec().decode(CommandCodec().encode(with_owner(command, None))).key_owner is None
    assert CommandCodec(reader=version(3)).decode(written) == with_owner(command, None)
    assert CommandCodec(reader=version(1)).decode(written) == with_caller(command, None, None)
