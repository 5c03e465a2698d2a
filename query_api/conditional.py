"""Conditional reads: the ETag of an ActionItem and If-None-Match (RFC 9110, section 13.1.2)."""

from __future__ import annotations


def etag(version: int) -> str:
    """The contract's entity tag: the item's version, quoted."""
    return f'"{version}"'


def none_match_hits(header: str | None, current: str) -> bool:
    """True when If-None-Match names the current tag (weak comparison) or is ``*``."""
    if header is None:
        return False
    candidates = [part.strip() for part in header.split(",")]
    if "*" in candidates:
        return True
    return any(_opaque(c) == _opaque(current) for c in candidates if c)


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag
