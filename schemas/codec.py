"""Avro single-object encoding of commands.

A value on the log is ``C3 01`` + the writer schema's CRC-64-AVRO fingerprint
(8 bytes, little-endian, as the Avro specification says) + the binary datum.
Every schema version ever written lives in ``schemas/avro`` so that any record
on the log can be read; records are resolved into the newest (reader) schema.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, cast, get_args, get_origin, get_type_hints

import fastavro
from fastavro.schema import to_parsing_canonical_form

from domain.commands import (
    NOT_NULLABLE,
    CommandEnvelope,
    CreateActionItem,
    Payload,
    UpdateActionItem,
)
from domain.limits import field_violations

MAGIC = b"\xc3\x01"
AVRO_DIR = Path(__file__).parent / "avro"
NAMESPACE = "io.actionitems.commands"
_VERSION_RE = re.compile(r"^action_item_command\.v(\d+)\.avsc$")


class DecodeError(ValueError):
    """A value on the log that is not a command we can read; the reason says why."""


def _fp_table() -> list[int]:
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    return table


_FP_TABLE = _fp_table()


def crc64_avro(data: bytes) -> int:
    """The Avro specification's 64-bit Rabin fingerprint (CRC-64-AVRO)."""
    fp = 0xC15D213AA4D7A795
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    path: Path
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as written after the marker

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


def load_schema_file(path: Path) -> Any:
    # named_schemas isolates each file: versions redefine the same record names.
    return fastavro.parse_schema(json.loads(path.read_text()), named_schemas={})


def schema_version_from(path: Path, version: int) -> SchemaVersion:
    parsed = load_schema_file(path)
    canonical = to_parsing_canonical_form(parsed)
    fingerprint = crc64_avro(canonical.encode()).to_bytes(8, "little")
    return SchemaVersion(version, path, parsed, fingerprint)


@cache
def schema_versions() -> tuple[SchemaVersion, ...]:
    """Every command schema version under schemas/avro, oldest first."""
    found = []
    for path in AVRO_DIR.glob("action_item_command.v*.avsc"):
        match = _VERSION_RE.match(path.name)
        if match:
            found.append(schema_version_from(path, int(match.group(1))))
    if not found:
        raise RuntimeError(f"no command schemas found in {AVRO_DIR}")
    return tuple(sorted(found, key=lambda v: v.version))


def writer_schema() -> SchemaVersion:
    return schema_versions()[-1]


class CommandCodec:
    """Encodes with one writer schema; decodes any known writer schema into the reader schema."""

    def __init__(
        self,
        writer: SchemaVersion | None = None,
        reader: SchemaVersion | None = None,
        known: tuple[SchemaVersion, ...] | None = None,
    ) -> None:
        self.writer = writer or writer_schema()
        self.reader = reader or writer_schema()
        versions = known if known is not None else schema_versions()
        self._by_fingerprint = {v.fingerprint: v for v in versions}
        self._by_fingerprint.setdefault(self.writer.fingerprint, self.writer)

    # -- encoding --------------------------------------------------------
    def encode(self, envelope: CommandEnvelope) -> bytes:
        return self.encode_datum(envelope_to_datum(envelope))

    def encode_datum(self, datum: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(self.writer.fingerprint)
        fastavro.schemaless_writer(out, self.writer.parsed, datum)
        return out.getvalue()

    # -- decoding --------------------------------------------------------
    def decode(self, value: bytes | None) -> CommandEnvelope:
        return datum_to_envelope(self.decode_datum(value))

    def decode_datum(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise DecodeError("record has no value (tombstone)")
        if len(value) < 10 or value[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (missing C3 01 marker)")
        fingerprint = value[2:10]
        writer = self._by_fingerprint.get(fingerprint)
        if writer is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fingerprint.hex()}: "
                "no schema under schemas/avro has it"
            )
        try:
            datum = fastavro.schemaless_reader(
                io.BytesIO(value[10:]),
                writer.parsed,
                # same schema: no resolution needed, and fastavro decodes about 2x faster
                None if writer.fingerprint == self.reader.fingerprint else self.reader.parsed,
                return_record_name=True,
                return_record_name_override=True,
            )
        except Exception as exc:  # fastavro raises many types for corrupt bytes
            raise DecodeError(f"corrupt Avro datum: {type(exc).__name__}: {exc}") from exc
        if not isinstance(datum, dict):
            raise DecodeError("datum is not a record")
        return datum


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# A payload's Avro record has the dataclass's name and its fields under the same names, but
# for these attributes (a Python name for what the schema spells otherwise).
_AVRO_NAMES = {"fields_set": "fieldsSet"}
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.__name__: cls for cls in (CreateActionItem, UpdateActionItem)
}


def _to_avro(value: object) -> object:
    """A payload attribute as its Avro datum: enums by value, tuples as arrays, sets sorted."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


_WRITERS: dict[type, tuple[tuple[str, str], ...]] = {}


def _writers(cls: type[Payload]) -> tuple[tuple[str, str], ...]:
    """(attribute, Avro name) for each field of ``cls`` (dataclasses.fields once per class)."""
    known = _WRITERS.get(cls)
    if known is None:
        known = tuple((f.name, _AVRO_NAMES.get(f.name, f.name)) for f in fields(cls))
        _WRITERS[cls] = known
    return known


def payload_to_datum(payload: Payload) -> tuple[str, dict[str, Any]]:
    """(record name, record) of a payload, field by field under the field's name."""
    body = {avro: _to_avro(getattr(payload, name)) for name, avro in _writers(type(payload))}
    return f"{NAMESPACE}.{type(payload).__name__}", body


def _converter(hint: Any) -> Callable[[Any], Any]:
    """From an Avro datum to the attribute's type (enum, tuple, frozenset; None stays None)."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if isinstance(hint, UnionType) and len(args) == 1:
        inner = _converter(args[0])
        return lambda v: None if v is None else inner(v)
    origin = get_origin(hint) or hint
    if origin in (tuple, frozenset):
        return cast(Callable[[Any], Any], origin)
    if isinstance(origin, type) and issubclass(origin, Enum):
        return origin
    return lambda v: v


def _readers(cls: type[Payload]) -> tuple[tuple[str, str, Any, Callable[[Any], Any]], ...]:
    """(attribute, Avro name, default or MISSING, converter) for each field of ``cls``."""
    hints = get_type_hints(cls)
    return tuple(
        (f.name, _AVRO_NAMES.get(f.name, f.name), f.default, _converter(hints[f.name]))
        for f in fields(cls)
    )


_READERS = {name: _readers(cls) for name, cls in PAYLOAD_TYPES.items()}


def datum_to_payload(name: str, body: dict[str, Any]) -> Payload:
    """The payload of a record: each field by its name; one the reader schema lacks (an
    older reader) takes the dataclass's default."""
    cls = PAYLOAD_TYPES.get(_short(name))
    if cls is None:
        raise DecodeError(f"unknown payload type {name}")
    values = {
        attr: convert(body[key] if default is MISSING else body.get(key, default))
        for attr, key, default, convert in _READERS[cls.__name__]
    }
    return cls(**values)


def envelope_to_datum(envelope: CommandEnvelope) -> dict[str, Any]:
    datum: dict[str, Any] = {
        "commandId": envelope.command_id,
        "actionItemId": envelope.action_item_id,
        "acceptedAt": envelope.accepted_at,
        "correlationId": envelope.correlation_id,
        "idempotencyKeyHash": envelope.idempotency_key_hash,
        "payloadHash": envelope.payload_hash,
        "expectedVersion": envelope.expected_version,
        "clientId": envelope.client_id,
        "caller": envelope.caller,
        "keyOwner": envelope.key_owner,
        "payload": payload_to_datum(envelope.payload),
    }
    datum.update(envelope.extra)
    return datum


_ENVELOPE_FIELDS = {
    "commandId",
    "actionItemId",
    "acceptedAt",
    "correlationId",
    "idempotencyKeyHash",
    "payloadHash",
    "expectedVersion",
    "clientId",
    "caller",
    "keyOwner",
    "payload",
}


def datum_to_envelope(datum: dict[str, Any]) -> CommandEnvelope:
    try:
        name, body = datum["payload"]
        payload = datum_to_payload(name, body)
        broken = contract_violations(payload)
        if broken:
            raise DecodeError(f"payload breaks the contract's limits: {'; '.join(broken)}")
        accepted_at = datum["acceptedAt"]
        if isinstance(accepted_at, int):
            accepted_at = datetime.fromtimestamp(accepted_at / 1000, tz=UTC)
        return CommandEnvelope(
            command_id=str(datum["commandId"]),
            action_item_id=str(datum["actionItemId"]),
            accepted_at=accepted_at,
            correlation_id=datum["correlationId"],
            payload_hash=datum["payloadHash"],
            payload=payload,
            idempotency_key_hash=datum.get("idempotencyKeyHash"),
            expected_version=datum.get("expectedVersion"),
            extra={k: v for k, v in datum.items() if k not in _ENVELOPE_FIELDS},
            client_id=datum.get("clientId"),
            caller=datum.get("caller"),
            key_owner=datum.get("keyOwner"),
        )
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"command does not have the expected shape: {exc!r}") from exc


def contract_violations(payload: Payload) -> list[str]:
    """What in a well-formed datum the command API would never have accepted (empty when none).

    Such a record (written by something else, or by an API with a hole) is not
    applied: the projector dead-letters it like any record it cannot read.
    """
    out: list[str] = []
    values: dict[str, Any]
    if isinstance(payload, UpdateActionItem):
        if not payload.fields_set:
            out.append("an update that sets no field")
        values = {name: getattr(payload, name) for name in payload.fields_set}
        out += [
            f"{name} is null" for name in NOT_NULLABLE if name in values and values[name] is None
        ]
    else:
        values = {f.name: getattr(payload, f.name) for f in fields(payload)}
    return out + field_violations(values)
