"""If-None-Match against the item's ETag (RFC 9110 weak comparison)."""

from __future__ import annotations

import pytest

from query_api.conditional import etag, none_match_hits


def test_the_etag_is_the_quoted_version() -> None:
    assert etag(7) == '"7"'


@pytest.mark.parametrize(
    ("header", "hits"),
    [
        (None, False),
        ("", False),
        ('"7"', True),
        ('W/"7"', True),
        ('"1", "7"', True),
        ('"1",W/"7"', True),
        ("*", True),
        ('"70"', False),
        ("7", False),
        ('"6"', False),
    ],
)
def test_if_none_match(header: str | None, hits: bool) -> None:
    assert none_match_hits(header, etag(7)) is hits
