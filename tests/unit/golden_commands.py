"""Golden data for the wire format and the command identities (tests/unit/fixtures/).

``tests/unit/fixtures/command_golden.json`` holds commands and the exact bytes
the codec wrote for them with every schema version, and requests with the
payloadHash/commandId/actionItemId they were given. Both were produced by the
code of commit aff64b9 (before the codec and the payload mapping went by field
name; build_command then took the hashed body from the route), so the tests
that read them prove that later code writes the same bytes and derives the
same ids. Regenerate (``python -m tests.unit.golden_commands``)
only for a deliberate change of the wire format or of the identity rules.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from domain.commands import (
    PATCHABLE_FIELDS,
    CommandEnvelope,
    CreateActionItem,
    Priority,
    Status,
    UpdateActionItem,
)

FIXTURE = Path(__file__).parent / "fixtures" / "command_golden.json"
NOT_NULLABLE_IN_PATCH = ("title", "priority", "status", "tags")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TEXT = string.ascii_letters + string.digits + " -_.é漢\u00a0🙂"


def plain(value: Any) -> Any:
    """A command (or any part of it) as JSON: enums as strings, sets sorted, times ISO."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if not isinstance(value, CommandEnvelope):
            out["type"] = type(value).__name__
        return out
    return value


def envelope_from(spec: dict[str, Any]) -> CommandEnvelope:
    """The inverse of ``plain`` for an envelope."""
    body = dict(spec["payload"])
    payload: CreateActionItem | UpdateActionItem
    if body.pop("type") == "CreateActionItem":
        payload = CreateActionItem(
            **{**body, "priority": Priority(body["priority"]), "tags": tuple(body["tags"])}
        )
    else:
        payload = UpdateActionItem(
            **{
                **body,
                "fields_set": frozenset(body["fields_set"]),
                "priority": Priority(body["priority"]) if body["priority"] else None,
                "status": Status(body["status"]) if body["status"] else None,
                "tags": tuple(body["tags"]) if body["tags"] is not None else None,
            }
        )
    return CommandEnvelope(
        **{
            **spec,
            "accepted_at": datetime.fromisoformat(spec["accepted_at"]),
            "payload": payload,
            "extra": {},
        }
    )


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randint(low, high)))


def _title(rng: random.Random) -> str:
    return rng.choice(string.ascii_letters) + _text(rng, 0, 40).strip()


def _date(rng: random.Random) -> str:
    return (datetime(2020, 1, 1) + timedelta(days=rng.randint(0, 4000))).strftime("%Y-%m-%d")


def _tags(rng: random.Random) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_title(rng)[:20] for _ in range(rng.randint(0, 5))))


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.6 else None


def _value(rng: random.Random, name: str) -> Any:
    return {
        "title": lambda: _title(rng),
        "description": lambda: _text(rng, 0, 80),
        "assignee": lambda: _title(rng)[:30],
        "priority": lambda: rng.choice(list(Priority)),
        "dueDate": lambda: _date(rng),
        "tags": lambda: _tags(rng),
        "status": lambda: rng.choice(list(Status)),
    }[name]()


def commands(count: int = 160, seed: int = 15) -> list[CommandEnvelope]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        payload: CreateActionItem | UpdateActionItem
        if i % 2 == 0:
            payload = CreateActionItem(
                title=_title(rng),
                description=_maybe(rng, _value(rng, "description")),
                assignee=_maybe(rng, _value(rng, "assignee")),
                priority=rng.choice(list(Priority)),
                dueDate=_maybe(rng, _date(rng)),
                tags=_tags(rng),
            )
        else:
            chosen = rng.sample(PATCHABLE_FIELDS, rng.randint(1, len(PATCHABLE_FIELDS)))
            values = {
                name: (
                    _value(rng, name)
                    if name in NOT_NULLABLE_IN_PATCH or rng.random() < 0.6
                    else None
                )
                for name in chosen
            }
            payload = UpdateActionItem(fields_set=frozenset(chosen), **values)
        out.append(
            CommandEnvelope(
                command_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                action_item_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                accepted_at=T0 + timedelta(milliseconds=rng.randint(0, 10**11)),
                correlation_id=_text(rng, 1, 40),
                payload_hash=f"{rng.getrandbits(256):064x}",
                payload=payload,
                idempotency_key_hash=_maybe(rng, f"{rng.getrandbits(256):064x}"),
                expected_version=(
                    rng.choice([None, 0, 1, 7, 2**40])
                    if isinstance(payload, UpdateActionItem)
                    else None
                ),
                client_id=_maybe(rng, _text(rng, 1, 20)),
                caller=_maybe(rng, _text(rng, 1, 20)),
            )
        )
    return out


CREATE_REQUESTS: list[dict[str, Any]] = [
    {"title": "x"},
    {"title": "  padded  "},
    {"title": "x", "priority": "normal", "tags": []},
    {"title": "x", "description": None, "assignee": None, "dueDate": None},
    {
        "title": "Write the runbook",
        "description": "d" * 50,
        "assignee": "ops",
        "priority": "urgent",
        "dueDate": "2026-12-31",
        "tags": ["b", "a"],
    },
    {"title": "é漢🙂", "tags": ["é", "漢"], "priority": "low"},
    {"title": "t", "description": "", "assignee": "a", "priority": "high"},
]
UPDATE_REQUESTS: list[dict[str, Any]] = [
    {"title": "x"},
    {"status": "done"},
    {"description": None, "assignee": None, "dueDate": None},
    {"tags": []},
    {"tags": ["z", "y"], "priority": "low"},
    {
        "title": "all",
        "description": "d",
        "assignee": "a",
        "priority": "high",
        "dueDate": "2027-02-28",
        "tags": ["t"],
        "status": "in_progress",
    },
]
WRITERS = [
    # caller, Idempotency-Key, expected version (updates only), X-Client-Id
    ("alice", "key-1", None, None),
    ("alice", "key-2", 3, "cli"),
    ("bob", "key-1", 0, None),
    ("anonymous", None, None, "x"),
]
ITEM = "11111111-1111-4111-8111-111111111111"


def identities() -> list[dict[str, Any]]:
    """Each request with the ids the command API gives it (ids are random without a key)."""
    from command_api.payloads import create_payload, update_payload
    from command_api.requests import CreateActionItemRequest, UpdateActionItemRequest
    from domain.identity import build_command

    out = []
    for kind, requests in (("create", CREATE_REQUESTS), ("update", UPDATE_REQUESTS)):
        for request in requests:
            for caller, key, expected, client in WRITERS:
                if kind == "create":
                    body = CreateActionItemRequest.model_validate(request)
                    command = build_command(
                        create_payload(body),
                        action_item_id=None,
                        caller=caller,
                        idempotency_key=key,
                        expected_version=None,
                        correlation_id="corr",
                        client_id=client,
                    )
                else:
                    patch = UpdateActionItemRequest.model_validate(request)
                    command = build_command(
                        update_payload(patch),
                        action_item_id=ITEM,
                        caller=caller,
                        idempotency_key=key,
                        expected_version=expected,
                        correlation_id="corr",
                        client_id=client,
                    )
                out.append(
                    {
                        "kind": kind,
                        "request": request,
                        "caller": caller,
                        "key": key,
                        "expectedVersion": expected if kind == "update" else None,
                        "clientId": client,
                        "payloadHash": command.payload_hash,
                        "commandId": command.command_id if key else None,
                        "actionItemId": command.action_item_id if key or kind == "update" else None,
                        "payload": plain(command.payload),
                    }
                )
    return out


def encoded() -> list[dict[str, Any]]:
    from schemas.codec import CommandCodec, schema_versions

    out = []
    for command in commands():
        wire = {}
        for writer in schema_versions():
            codec = CommandCodec(writer=writer)
            value = codec.encode(command)
            decoded = plain(CommandCodec().decode(value))
            # what the newest reader saw differently (fields this writer does not have)
            differs = {k: v for k, v in decoded.items() if v != plain(command)[k]}
            wire[str(writer.version)] = {"hex": value.hex(), "decodedDiffers": differs}
        out.append({"command": plain(command), "wire": wire})
    return out


def main() -> None:
    FIXTURE.write_text(
        json.dumps({"codec": encoded(), "identity": identities()}, ensure_ascii=False, indent=None)
        + "\n"
    )


if __name__ == "__main__":
    main()
