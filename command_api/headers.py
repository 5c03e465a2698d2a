"""The write requests' headers: the idempotency key, correlation, If-Match, a client label.

Who is calling is the bearer token's sub (servicekit/auth.py), never a header.

Each is optional and single-valued; a malformed or repeated one is a 400 that
names the header. The patterns here are also what the OpenAPI document states.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers

from servicekit.problems import Problem

ANONYMOUS = "anonymous"
TOKEN_PATTERN = r"^[!-~]{1,255}$"  # 1..255 visible ASCII characters
IF_MATCH_PATTERN = r'^("[1-9][0-9]{0,17}"|\*)$'
_TOKEN_RE = re.compile(r"[!-~]{1,255}")
_IF_MATCH_RE = re.compile(r'"([1-9][0-9]{0,17})"|\*')

_TOKEN_HELP = "1..255 visible ASCII characters"
HEADER_DOCS: dict[str, str] = {
    "Idempotency-Key": (
        "A retry with the same key from the same caller (the bearer token's sub) gets the same "
        "commandId (and, for a "
        "create, the same actionItemId) and takes effect at most once. Reusing a key for a "
        f"different body is rejected during processing (IDEMPOTENCY_KEY_REUSED). {_TOKEN_HELP}."
    ),
    "X-Client-Id": (
        "A label the client gives itself, recorded in the command (clientId) for information "
        "only: it is not authenticated and scopes nothing (the caller is the token's sub). "
        f"{_TOKEN_HELP}."
    ),
    "X-Correlation-Id": (
        f"Carried in the command and its record headers; generated when absent. {_TOKEN_HELP}."
    ),
    "If-Match": (
        'Apply only if the item is at this version: "<version>" (the ETag of a read), or * '
        "for any version. Otherwise the command is rejected with VERSION_CONFLICT."
    ),
}


@dataclass(frozen=True)
class WriteHeaders:
    client_id: str | None
    idempotency_key: str | None
    correlation_id: str
    expected_version: int | None


def _bad(name: str, message: str) -> Problem:
    return Problem(
        400,
        "Bad Request",
        f"{name}: {message}",
        type_="/problems/bad-header",
        errors=[{"field": name, "message": message}],
    )


def _single(headers: Headers, name: str) -> str | None:
    values = headers.getlist(name)
    if len(values) > 1:
        raise _bad(name, "must be sent at most once")
    return values[0] if values else None


def _token(headers: Headers, name: str) -> str | None:
    value = _single(headers, name)
    if value is not None and not _TOKEN_RE.fullmatch(value):
        raise _bad(name, _TOKEN_HELP)
    return value


def _if_match(headers: Headers, allowed: bool) -> int | None:
    value = _single(headers, "If-Match")
    if value is None:
        return None
    if not allowed:
        raise _bad("If-Match", "only PATCH is conditional; a create has no version to match")
    match = _IF_MATCH_RE.fullmatch(value.strip())
    if not match:
        raise _bad("If-Match", 'expected one strong version tag, e.g. "3", or *')
    return int(match.group(1)) if match.group(1) else None


def write_headers(headers: Headers, *, conditional: bool) -> WriteHeaders:
    """The headers of a POST (``conditional=False``) or PATCH, validated."""
    key = _token(headers, "Idempotency-Key")
    client_id = _token(headers, "X-Client-Id")
    correlation = _token(headers, "X-Correlation-Id") or str(uuid.uuid4())
    return WriteHeaders(client_id, key, correlation, _if_match(headers, conditional))


# If-Match as two alternatives rather than one alternation pattern (IF_MATCH_PATTERN states the
# same): schemathesis 4's coverage phase draws "0" as valid for the alternation.
IF_MATCH_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r'^"[1-9][0-9]{0,17}"$'},
        {"type": "string", "enum": ["*"]},
    ]
}


def header_parameters(*names: str) -> list[dict[str, Any]]:
    """OpenAPI parameter objects for the named optional headers."""
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": HEADER_DOCS[name],
            "schema": IF_MATCH_SCHEMA
            if name == "If-Match"
            else {"type": "string", "pattern": TOKEN_PATTERN},
        }
        for name in names
    ]
