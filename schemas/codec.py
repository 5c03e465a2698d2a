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
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from domain.commands import (
    CommandEnvelope,
    CreateActionItem,
    Priority,
    Status,
    UpdateActionItem,
)
from domain.limits import (
    ASSIGNEE_MAX,
    DATE_PATTERN,
    DESCRIPTION_MAX,
    TAG_MAX,
    TAGS_MAX,
    real_date,
    trimmed_title,
    unique,
)

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


def envelope_to_datum(envelope: CommandEnvelope) -> dict[str, Any]:
    payload = envelope.payload
    body: dict[str, Any]
    if isinstance(payload, CreateActionItem):
        record_name = f"{NAMESPACE}.CreateActionItem"
        body = {
            "title": payload.title,
            "description": payload.description,
            "assignee": payload.assignee,
            "priority": str(payload.priority),
            "dueDate": payload.dueDate,
            "tags": list(payload.tags),
        }
    else:
        record_name = f"{NAMESPACE}.UpdateActionItem"
        body = {
            "fieldsSet": sorted(payload.fields_set),
            "title": payload.title,
            "description": payload.description,
            "assignee": payload.assignee,
            "priority": str(payload.priority) if payload.priority is not None else None,
            "dueDate": payload.dueDate,
            "tags": list(payload.tags) if payload.tags is not None else None,
            "status": str(payload.status) if payload.status is not None else None,
        }
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
        "payload": (record_name, body),
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
    "payload",
}


def datum_to_envelope(datum: dict[str, Any]) -> CommandEnvelope:
    try:
        name, body = datum["payload"]
        payload: CreateActionItem | UpdateActionItem
        if _short(name) == "CreateActionItem":
            payload = CreateActionItem(
                title=body["title"],
                description=body["description"],
                assignee=body["assignee"],
                priority=Priority(body["priority"]),
                dueDate=body["dueDate"],
                tags=tuple(body["tags"]),
            )
        elif _short(name) == "UpdateActionItem":
            payload = UpdateActionItem(
                fields_set=frozenset(body["fieldsSet"]),
                title=body["title"],
                description=body["description"],
                assignee=body["assignee"],
                priority=Priority(body["priority"]) if body["priority"] is not None else None,
                dueDate=body["dueDate"],
                tags=tuple(body["tags"]) if body["tags"] is not None else None,
                status=Status(body["status"]) if body["status"] is not None else None,
            )
        else:
            raise DecodeError(f"unknown payload type {name}")
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
        )
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"command does not have the expected shape: {exc!r}") from exc


_NOT_NULLABLE = ("title", "priority", "status", "tags")


def contract_violations(payload: CreateActionItem | UpdateActionItem) -> list[str]:
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
            f"{name} is null" for name in _NOT_NULLABLE if name in values and values[name] is None
        ]
    else:
        values = {
            "title": payload.title,
            "description": payload.description,
            "assignee": payload.assignee,
            "dueDate": payload.dueDate,
            "tags": payload.tags,
        }
    checks: dict[str, Any] = {
        "title": trimmed_title,
        "dueDate": lambda v: real_date(v) if re.fullmatch(DATE_PATTERN, v) else real_date("x"),
        "tags": lambda v: unique(list(v)),
    }
    for name, value in values.items():
        if value is None:
            continue
        try:
            if name in checks:
                checks[name](value)
        except ValueError as exc:
            out.append(f"{name}: {exc}")
        if name == "description" and len(value) > DESCRIPTION_MAX:
            out.append(f"description longer than {DESCRIPTION_MAX}")
        if name == "assignee" and not 1 <= len(value) <= ASSIGNEE_MAX:
            out.append(f"assignee not 1..{ASSIGNEE_MAX} characters")
        if name == "tags" and (
            len(value) > TAGS_MAX or any(not 1 <= len(t) <= TAG_MAX for t in value)
        ):
            out.append(f"more than {TAGS_MAX} tags or a tag not 1..{TAG_MAX} characters")
    return out
