"""Read a request body as the contract allows it: bounded size, JSON media types, valid JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from servicekit.problems import Problem


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(
    request: Request, media_types: tuple[str, ...], limit: int
) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in media_types:
        raise Problem(
            415,
            "Unsupported Media Type",
            f"Content-Type must be one of {', '.join(media_types)}",
            errors=[{"field": "Content-Type", "message": f"unsupported: {media or 'missing'}"}],
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(
            400,
            "Bad Request",
            f"body is not valid JSON: {exc}",
            errors=[{"field": "body", "message": "not valid JSON"}],
        ) from None
    if not isinstance(data, dict):
        raise Problem(
            422,
            "Unprocessable Content",
            "body must be a JSON object",
            type_="/problems/validation",
            errors=[{"field": "body", "message": "must be a JSON object"}],
        )
    return data


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Content Too Large",
        f"body exceeds {limit} bytes",
        errors=[{"field": "body", "message": f"larger than {limit} bytes"}],
    )
