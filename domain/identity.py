"""Turn a validated request into the command envelope that goes on the log.

Identity rules (see README, "Idempotency"):
- without an Idempotency-Key, commandId (and a create's actionItemId) are random;
- with one, they are derived from (caller, key): a retry of the same request
  gets the same commandId and the same actionItemId, so it lands under the same
  record key and the projector applies it once. The commandId also covers the
  payload hash, so a key reused for a *different* payload is a different
  command on the log (compaction never collapses it into the first one) which
  the projector rejects with IDEMPOTENCY_KEY_REUSED.
- what the payload hash covers is ``hashed_body``: an update's fields as given;
  a create's fields of schema v1 always (null or default included, as v1 hashed
  them), any later field only when it is given, so adding an optional field
  never changes the commandId of a create that does not use it (a keyed retry
  across the upgrade keeps its commandId).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from domain.commands import CommandEnvelope, Payload, UpdateActionItem

NAMESPACE = uuid.UUID("6f1b5c2e-8a43-4d0b-9a57-2d3b1f0c7e11")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key_hash(caller: str, idempotency_key: str) -> str:
    return sha256_hex(f"{caller}\x00{idempotency_key}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# A create's fields that its payload hash covers even when left at their default: the fields
# of schema v1. Never add to this tuple: that would change the commandIds of existing creates.
CREATE_FIELDS_ALWAYS_HASHED = ("title", "description", "assignee", "priority", "dueDate", "tags")


def _json(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def hashed_body(payload: Payload) -> dict[str, Any]:
    """The part of a command's payload that its payload hash covers, as JSON values."""
    if isinstance(payload, UpdateActionItem):
        return {name: _json(getattr(payload, name)) for name in payload.fields_set}
    return {
        f.name: _json(getattr(payload, f.name))
        for f in fields(payload)
        if f.name in CREATE_FIELDS_ALWAYS_HASHED or getattr(payload, f.name) != f.default
    }


def payload_hash(
    kind: str, target: str | None, body: dict[str, Any], expected_version: int | None
) -> str:
    return sha256_hex(canonical_json([kind, target, body, expected_version]))


def build_command(
    payload: Payload,
    *,
    action_item_id: str | None,
    caller: str,
    idempotency_key: str | None,
    expected_version: int | None,
    correlation_id: str,
    now: datetime | None = None,
    client_id: str | None = None,
) -> CommandEnvelope:
    """The envelope for a create (action_item_id None) or an update of action_item_id.

    ``caller`` is who is writing (the bearer token's sub); it scopes the
    Idempotency-Key and is recorded in the command as ``caller`` (schema v3).
    ``client_id`` is what the client claimed in X-Client-Id (None without one),
    recorded as clientId for information only.
    """
    kind = "create" if action_item_id is None else "update"
    digest = payload_hash(kind, action_item_id, hashed_body(payload), expected_version)
    khash = key_hash(caller, idempotency_key) if idempotency_key is not None else None
    if khash is None:
        item_id = action_item_id or str(uuid.uuid4())
        command_id = str(uuid.uuid4())
    else:
        item_id = action_item_id or str(uuid.uuid5(NAMESPACE, f"create:{khash}"))
        command_id = str(uuid.uuid5(NAMESPACE, f"command:{khash}:{kind}:{item_id}:{digest}"))
    accepted = now or datetime.now(tz=UTC)
    accepted = accepted.replace(microsecond=accepted.microsecond // 1000 * 1000)
    return CommandEnvelope(
        command_id=command_id,
        action_item_id=item_id,
        accepted_at=accepted,
        correlation_id=correlation_id,
        payload_hash=digest,
        payload=payload,
        idempotency_key_hash=khash,
        expected_version=expected_version,
        client_id=client_id,
        caller=caller,
    )
