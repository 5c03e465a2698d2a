"""Avro single-object encoding of commands."""

from __future__ import annotations

import pytest

from schemas.codec import (
    MAGIC,
    CommandCodec,
    DecodeError,
    crc64_avro,
    envelope_to_datum,
    writer_schema,
)
from schemas.partitioning import murmur2, partition_for
from tests.unit.builders import create, update


def test_round_trip_of_both_payloads() -> None:
    codec = CommandCodec()
    for command in (
        create(title="x", tags=("a",), dueDate="2026-01-01"),
        update(title="y", assignee=None, tags=[], status="done", expected=3),
    ):
        value = codec.encode(command)
        assert value[:2] == MAGIC
        assert value[2:10] == writer_schema().fingerprint
        assert codec.decode(value) == command


def test_crc64_avro_matches_the_specification() -> None:
    # vectors from Avro's share/test/data/schema-tests.txt (fingerprints as Java longs)
    assert crc64_avro(b'"null"') == 7195948357588979594
    assert crc64_avro(b'"int"') == 8247732601305521295


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"garbage!!!!!", "C3 01"),
        (MAGIC + b"\x00" * 8 + b"\x00", "unknown writer schema"),
        (MAGIC + writer_schema().fingerprint + b"\xff\xff", "corrupt"),
    ],
)
def test_undecodable_values_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        CommandCodec().decode(value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"title": "  "}, "title"),
        ({"dueDate": "2026-02-30"}, "dueDate"),
        ({"tags": ["a", "a"]}, "repeat"),
        ({"assignee": ""}, "assignee"),
    ],
)
def test_a_well_formed_create_the_api_would_refuse_is_undecodable(
    payload: dict[str, object], reason: str
) -> None:
    codec = CommandCodec()
    datum = envelope_to_datum(create(title="x"))
    name, body = datum["payload"]
    datum["payload"] = (name, {**body, **payload})
    with pytest.raises(DecodeError, match=f"breaks the contract.*{reason}"):
        codec.decode(codec.encode_datum(datum))


def test_an_update_that_nulls_a_field_that_cannot_be_cleared_is_undecodable() -> None:
    codec = CommandCodec()
    datum = envelope_to_datum(update(title="x"))
    name, body = datum["payload"]
    datum["payload"] = (name, {**body, "title": None})
    with pytest.raises(DecodeError, match="title is null"):
        codec.decode(codec.encode_datum(datum))


def test_murmur2_matches_kafkas_java_partitioner() -> None:
    # vectors from Kafka's UtilsTest.testMurmur2
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


def test_every_command_of_an_item_maps_to_one_partition() -> None:
    assert len({partition_for("item-1", 6) for _ in range(10)}) == 1
    assert {partition_for(f"item-{i}", 6) for i in range(200)} == set(range(6))
