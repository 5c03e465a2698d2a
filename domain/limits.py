"""The contract's limits on a command's fields, and the checks a JSON Schema cannot state.

The HTTP request models (command_api/requests.py) publish these limits in
their schema and run these checks; nothing here knows about HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

TITLE_MAX = 200
DESCRIPTION_MAX = 10_000
ASSIGNEE_MAX = 200
TAG_MAX = 50
TAGS_MAX = 20
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # ASCII digits only (\d would take any script)


# What str.strip() removes (every character for which str.isspace() is true), as a regex class.
WHITESPACE_CLASS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The title rule as a JSON Schema pattern: 1..TITLE_MAX characters once surrounding whitespace
# is trimmed (so a title of only whitespace, control separators included, is refused).
TITLE_PATTERN = (
    rf"^[{WHITESPACE_CLASS}]*[^{WHITESPACE_CLASS}]"
    rf"(?:[\s\S]{{0,{TITLE_MAX - 2}}}[^{WHITESPACE_CLASS}])?[{WHITESPACE_CLASS}]*$"
)


def trimmed_title(value: str) -> str:
    """The title without surrounding whitespace; 1..TITLE_MAX characters or ValueError."""
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= TITLE_MAX:
        raise ValueError(f"must be 1..{TITLE_MAX} characters after trimming")
    return trimmed


def real_date(value: str) -> str:
    """A YYYY-MM-DD that is a real calendar date, or ValueError."""
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real calendar date (YYYY-MM-DD)") from None
    return value


def unique(tags: list[str]) -> list[str]:
    """The tags, or ValueError when one repeats."""
    if len(set(tags)) != len(tags):
        raise ValueError("tags must not repeat")
    return tags


def _due_date(value: str) -> str:
    return real_date(value) if re.fullmatch(DATE_PATTERN, value) else real_date("x")


# The checks of the fields that have one, by the field's name in the command: a value that
# raises ValueError breaks the contract (its message is the reason).
FIELD_CHECKS: dict[str, Callable[[Any], object]] = {
    "title": trimmed_title,
    "dueDate": _due_date,
    "tags": lambda v: unique(list(v)),
}


def field_violations(values: Mapping[str, Any]) -> list[str]:
    """What among these command field values the contract forbids (empty when nothing).

    A None is never a violation here: whether a field may be null is the
    command's rule (domain.commands.NOT_NULLABLE), not the field's limit.
    """
    out: list[str] = []
    for name, value in values.items():
        if value is None:
            continue
        try:
            if name in FIELD_CHECKS:
                FIELD_CHECKS[name](value)
        except ValueError as exc:
            out.append(f"{name}: {exc}")
        if name == "description" and len(value) > DESCRIPTION_MAX:
            out.append(f"description longer than {DESCRIPTION_MAX}")
        if name == "assignee" and not 1 <= len(value) <= ASSIGNEE_MAX:
            out.append(f"assignee not 1..{ASSIGNEE_MAX} characters")
        if name == "tags" and (
            len(value) > TAGS_MAX or any(not 1 <= len(t) <= TAG_MAX for t in value)
        ):
            out.append(f"more than {TAGS_MAX} tags or a tag not 1..{TAG_MAX} characters")
    return out
