"""Opaque tokens handed to clients: compact JSON, URL-safe base64 without padding.

The consistency token of a 202 and the list cursor both use this format; a
token issued by an earlier release decodes here unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

MAX_TOKEN_LENGTH = 200


class BadTokenText(ValueError):
    """The text is not URL-safe base64 of a JSON document, or is too long to be ours."""


def encode_token(value: Any, *, compact: bool = True) -> str:
    """``value`` as JSON (compact separators unless told otherwise), base64url, no padding."""
    text = json.dumps(value, separators=(",", ":") if compact else None)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(text: str, max_length: int = MAX_TOKEN_LENGTH) -> Any:
    """The JSON value inside ``text``; BadTokenText for anything else (empty or too long too)."""
    if not 1 <= len(text) <= max_length:
        raise BadTokenText("token is empty or too long")
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadTokenText("token is not base64url JSON") from exc
