"""Read a request body as the contract allows it: bounded size, JSON media types, valid JSON.

Every way a body can be wrong ends here as a problem that names the offending
part, never as an unexpected exception: a declared or streamed (chunked) body
over the limit (413), a media type or charset we do not take (415), bytes that
are not UTF-8 JSON, nesting too deep for the parser (400), a member name given
twice or a string that is not valid Unicode (422), anything but an object (422).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from servicekit.problems import Problem

VALIDATION = "/problems/validation"


class _DuplicateMember(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateMember(name)
        result[name] = value
    return result


def media_type_problem(content_type: str, media_types: tuple[str, ...]) -> Problem | None:
    """None when ``content_type`` is one of ``media_types`` (charset, if any, UTF-8)."""
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in media_types:
        return _unsupported(
            f"Content-Type must be one of {', '.join(media_types)}",
            f"unsupported: {media or 'missing'}",
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return _unsupported("JSON bodies must be UTF-8 (RFC 8259)", "charset must be utf-8")
    return None


async def read_json_object(
    request: Request, media_types: tuple[str, ...], limit: int
) -> dict[str, Any]:
    problem = media_type_problem(request.headers.get("content-type", ""), media_types)
    if problem is not None:
        raise problem
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
    except ClientDisconnect:
        raise _bad_body(
            "the client disconnected before the body was complete", "incomplete"
        ) from None
    return parse_json_object(bytes(body))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or the problem that says what is wrong with it."""
    try:
        data = json.loads(
            raw.decode("utf-8"),
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_members,
        )
    except _DuplicateMember as exc:
        name = _printable(exc.name)
        raise _unprocessable(
            f"member {name!r} appears more than once", name, "appears more than once"
        ) from None
    except RecursionError:
        raise _bad_body("body is nested too deeply", "nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise _bad_body(
            f"body is not UTF-8: invalid byte at position {exc.start}", "not UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise _bad_body(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "not valid JSON",
        ) from None
    except ValueError as exc:  # NaN/Infinity, or a number with thousands of digits
        reason = str(exc) if "is not valid JSON" in str(exc) else "a number too long to read"
        raise _bad_body(f"body is not valid JSON: {reason}", "not valid JSON") from None
    if not isinstance(data, dict):
        raise _unprocessable("body must be a JSON object", "body", "must be a JSON object")
    where = _lone_surrogate(data, "")
    if where is not None:
        message = "not a valid Unicode string (lone surrogate)"
        raise _unprocessable(f"{where}: {message}", where, message)
    return data


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """Text safe to put in a UTF-8 response (JSON escapes may decode to lone surrogates)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first name or string holding a lone surrogate (UTF-8 cannot carry it).

    Iterative, so a document nested as deeply as the parser allows cannot overflow here.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _valid_unicode(item):
                return _printable(where or "body")
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for name, v in reversed(list(item.items())):
                member = f"{where}.{name}" if where else name
                if not _valid_unicode(name):
                    return _printable(member)
                stack.append((v, member))
    return None


def _too_large(limit: int) -> Problem:
    return _problem(
        413,
        "Content Too Large",
        f"body exceeds {limit} bytes",
        "body",
        f"larger than {limit} bytes",
    )


def _problem(
    status: int, title: str, detail: str, field: str, message: str, type_: str = "about:blank"
) -> Problem:
    """A problem naming the one part of the request that is wrong (``errors`` has one entry)."""
    return Problem(
        status, title, detail, type_=type_, errors=[{"field": field, "message": message}]
    )


def _bad_body(detail: str, message: str) -> Problem:
    return _problem(400, "Bad Request", detail, "body", message)


def _unsupported(detail: str, message: str) -> Problem:
    return _problem(415, "Unsupported Media Type", detail, "Content-Type", message)


def _unprocessable(detail: str, field: str, message: str) -> Problem:
    return _problem(422, "Unprocessable Content", detail, field, message, VALIDATION)
