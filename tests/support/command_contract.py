"""An independent oracle of the write contract: is this HTTP request one the API must accept?

Written from ../shared/docs/contract.md and the README's notes, not from the
command API's code, so that a property-based run can compare the two: a request
this oracle calls invalid must never get a 202, and one it calls valid must
(while the log is up).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import unquote

LIMIT = 64 * 1024
TOKEN = re.compile(r"[!-~]{1,255}")
IF_MATCH = re.compile(r'"[1-9][0-9]{0,17}"|\*')
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
PRIORITIES = {"low", "normal", "high", "urgent"}
STATUSES = {"open", "in_progress", "done", "cancelled"}
CREATE_FIELDS = {"title", "description", "assignee", "priority", "dueDate", "tags"}
PATCH_FIELDS = CREATE_FIELDS | {"status"}
NOT_NULL_IN_PATCH = {"title", "priority", "status", "tags"}

UNDECIDED = "undecided"  # forms the contract leaves open (e.g. a UUID in braces)


class Invalid(Exception):
    pass


def verdict(
    method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes | None
) -> str | None:
    """None when the contract says the request must be accepted; else why not (or UNDECIDED)."""
    try:
        _check(method.upper(), unquote(path.split("?", 1)[0]), headers, body or b"")
    except Invalid as exc:
        return str(exc)
    return None


def _check(method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes) -> None:
    if method == "POST" and path == "/action-items":
        patch = False
    elif method == "PATCH" and path.startswith("/action-items/"):
        patch = True
        item = path.removeprefix("/action-items/")
        if not UUID.fullmatch(item):
            raise Invalid(UNDECIDED if _uuid_like(item) else "actionItemId is not a UUID")
    else:
        raise Invalid("no such operation")
    named: dict[str, list[str]] = {}
    for name, value in headers:
        named.setdefault(name.lower(), []).append(value)
    for name in ("idempotency-key", "x-client-id", "x-correlation-id", "if-match"):
        values = named.get(name, [])
        if len(values) > 1:
            raise Invalid(f"{name} repeated")
        if values and name != "if-match" and not TOKEN.fullmatch(values[0]):
            raise Invalid(f"{name} malformed")
    if "if-match" in named:
        if not patch:
            raise Invalid("If-Match on a create")
        if not IF_MATCH.fullmatch(named["if-match"][0].strip()):
            raise Invalid("If-Match malformed")
    _check_media_type(named.get("content-type", [""])[0], patch)
    if len(body) > LIMIT:
        raise Invalid("body over 64 KiB")
    data = _json_object(body)
    (_check_patch if patch else _check_create)(data)


def _uuid_like(text: str) -> bool:
    bare = text.lower().removeprefix("urn:uuid:").strip("{}").replace("-", "")
    return len(bare) == 32 and all(c in "0123456789abcdef" for c in bare)


def _check_media_type(content_type: str, patch: bool) -> None:
    media, _, params = content_type.partition(";")
    allowed = (
        {"application/json", "application/merge-patch+json"} if patch else {"application/json"}
    )
    if media.strip().lower() not in allowed:
        raise Invalid(f"media type {media!r}")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise Invalid("charset")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Invalid("duplicate member")
    return dict(pairs)


def _json_object(body: bytes) -> dict[str, Any]:
    def no_constants(name: str) -> Any:
        raise Invalid(f"{name} is not JSON")

    try:
        text = body.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Invalid(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise Invalid("not an object")
    return data


def _string(value: Any, name: str, low: int, high: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{name} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{name} holds a lone surrogate") from None
    if not low <= len(value) <= high:
        raise Invalid(f"{name} length")
    return value


def _field(name: str, value: Any) -> None:
    if name == "title":
        _string(value, name, 0, 10**9)
        if not 1 <= len(value.strip()) <= 200:
            raise Invalid("title length after trimming")
    elif name == "description":
        if value is not None:
            _string(value, name, 0, 10_000)
    elif name == "assignee":
        if value is not None:
            _string(value, name, 1, 200)
    elif name == "priority":
        if not isinstance(value, str) or value not in PRIORITIES:
            raise Invalid("priority")
    elif name == "status":
        if not isinstance(value, str) or value not in STATUSES:
            raise Invalid("status")
    elif name == "dueDate":
        if value is not None:
            _string(value, name, 10, 10)
            if not DATE.fullmatch(value):
                raise Invalid("dueDate format")
            try:
                date.fromisoformat(value)
            except ValueError:
                raise Invalid("dueDate is not a calendar date") from None
    elif name == "tags":
        if not isinstance(value, list) or len(value) > 20:
            raise Invalid("tags")
        for tag in value:
            _string(tag, "tag", 1, 50)
        if len(set(value)) != len(value):
            raise Invalid("tags repeat")


def _strings_valid(data: Mapping[str, Any]) -> None:
    for name in data:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid("member name holds a lone surrogate") from None


def _check_create(data: dict[str, Any]) -> None:
    _strings_valid(data)
    if set(data) - CREATE_FIELDS:
        raise Invalid("unknown field")
    if "title" not in data:
        raise Invalid("title missing")
    for name, value in data.items():
        _field(name, value)


def _check_patch(data: dict[str, Any]) -> None:
    _strings_valid(data)
    if not data:
        raise Invalid("empty patch")
    if set(data) - PATCH_FIELDS:
        raise Invalid("unknown field")
    for name, value in data.items():
        if value is None and name in NOT_NULL_IN_PATCH:
            raise Invalid(f"{name} cannot be null")
        _field(name, value)
