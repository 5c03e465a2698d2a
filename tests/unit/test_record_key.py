"""The command topic's record keys (issue 20): one per produced record; legacy keys recognised."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Message

from projector.consumer import decode_batch
from schemas.codec import CommandCodec
from schemas.record_key import command_id_of_key, is_legacy_key, record_key
from tests.unit.builders import create


def test_every_attempt_gets_a_key_of_its_own_that_names_its_command() -> None:
    command_id = str(uuid.uuid4())
    keys = {record_key(command_id) for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        prefix, dot, attempt = key.partition(".")
        assert (prefix, dot, len(attempt)) == (command_id, ".", 32)
        assert command_id_of_key(key) == command_id
        assert command_id_of_key(key.encode()) == command_id
        assert not is_legacy_key(key.encode(), command_id)
    assert record_key(command_id, "a1") == f"{command_id}.a1"


def test_a_legacy_key_is_exactly_the_command_id() -> None:
    command_id = str(uuid.uuid4())
    assert is_legacy_key(command_id.encode(), command_id)
    assert is_legacy_key(command_id, command_id)
    assert command_id_of_key(command_id.encode()) == command_id
    for other in (None, b"", b"\xff\xfe", str(uuid.uuid4()).encode(), f"{command_id}.".encode()):
        assert not is_legacy_key(other, command_id)
    assert command_id_of_key(None) is None
    assert command_id_of_key(b"\xff\xfe") is None


def test_a_command_id_with_the_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="never contains"):
        record_key("a.b")


def test_decoding_marks_legacy_keyed_records_from_the_key_alone() -> None:
    codec = CommandCodec()
    command = create()
    value = codec.encode(command)
    messages = [
        Message(topic="t", partition=0, offset=0, key=command.command_id.encode(), value=value),
        Message(
            topic="t",
            partition=0,
            offset=1,
            key=record_key(command.command_id).encode(),
            value=value,
        ),
        Message(topic="t", partition=0, offset=2, key=None, value=value),
    ]
    good, bad = decode_batch(codec, messages)
    assert bad == []
    assert [(r.position.offset, r.legacy_key) for r in good] == [(0, True), (1, False), (2, False)]
    assert {r.command for r in good} == {command}
