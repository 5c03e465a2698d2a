"""Turn a validated request into the command envelope that goes on the log.

Identity rules (see README, "Idempotency"):
- without an Idempotency-Key, commandId (and a create's actionItemId) are random;
- with one, they are derived from (caller, key): a retry of the same request
  gets the same commandId and the same actionItemId, so it lands under the same
  record key and the projector applies it once. The commandId also covers the
  payload hash, so a key reused for a *different* payload is a different
  command on the log (compaction never collapses it into the first one) which
  the projector rejects with IDEMPOTENCY_KEY_REUSED.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from domain.commands import CommandEnvelope, Payload

NAMESPACE = uuid.UUID("6f1b5c2e-8a43-4d0b-9a57-2d3b1f0c7e11")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key_hash(caller: str, idempotency_key: str) -> str:
    return sha256_hex(f"{caller}\x00{idempotency_key}")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(
    kind: str, target: str | None, body: dict[str, Any], expected_version: int | None
) -> str:
    return sha256_hex(canonical_json([kind, target, body, expected_version]))


def build_command(
    payload: Payload,
    normalized_body: dict[str, Any],
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
    digest = payload_hash(kind, action_item_id, normalized_body, expected_version)
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
