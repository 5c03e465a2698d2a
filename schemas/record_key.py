"""The command topic's record keys: one key per produced record, never one per command.

The topic is compacted. Compaction keeps the *last* record of every key, so a
key shared by two records means the earlier one is eventually deleted. A
command can reach the log twice (a writer retries a ``503`` whose first attempt
did land after all); the contract wants it to take effect at its *first*
copy's place in every replay, before and after compaction. So every produce
call gets its own key:

    <commandId>.<attemptId>      attemptId: a fresh uuid4, 32 hex digits

A retry by the client is a new produce call, hence a new key: both copies stay
on the log and the projector's "first copy wins" decides the same way in the
live model and in every replay. librdkafka's own retries of one produce call
resend the same record (same key); the idempotent producer has the broker
drop them, so one produce call leaves one record. (librdkafka can write a
record twice under its one key after an epoch bump; the command API's producer
settings exclude the bumps: docs/command-api.md, "One produce call, one record".)

Records written before this scheme (issue 20) are keyed by the bare commandId
(``legacy``). They stay on the log as they are (it is never rewritten) and the
projector keeps their old rule: a later legacy copy moves the command's
recorded position to itself, because compaction keeps only that copy.

The partition never comes from the key (see ``schemas/partitioning.py``), and
every record also carries its commandId in its value and in the ``command.id``
header: nothing needs to parse the key.
"""

from __future__ import annotations

import uuid

SEPARATOR = "."
COMMAND_ID_HEADER = "command.id"


def record_key(command_id: str, attempt_id: str | None = None) -> str:
    """The key of one produced record of ``command_id`` (a fresh attempt unless given)."""
    if SEPARATOR in command_id:
        raise ValueError(f"a commandId never contains {SEPARATOR!r}: {command_id!r}")
    return f"{command_id}{SEPARATOR}{attempt_id or uuid.uuid4().hex}"


def _text(key: bytes | str | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            return None
    return key


def command_id_of_key(key: bytes | str | None) -> str | None:
    """The commandId a key names (either scheme); None for a missing or non-text key."""
    text = _text(key)
    if text is None:
        return None
    return text.split(SEPARATOR, 1)[0]


def is_legacy_key(key: bytes | str | None, command_id: str) -> bool:
    """True for a record written under the old scheme: its key is exactly its commandId."""
    return _text(key) == command_id
