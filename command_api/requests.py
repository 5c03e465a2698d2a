"""The write requests as the contract defines them; validation names the offending field."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from schemas.commands import Priority, Status

Title = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Description = Annotated[StrictStr, Field(max_length=10_000)]
Assignee = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Tag = Annotated[StrictStr, Field(min_length=1, max_length=50)]
DueDate = Annotated[StrictStr, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-12-31"])]
Tags = Annotated[list[Tag], Field(max_length=20)]


def _trimmed_title(value: str) -> str:
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= 200:
        raise ValueError("must be 1..200 characters after trimming")
    return trimmed


def _real_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real calendar date (YYYY-MM-DD)") from None
    return value


def _unique(tags: list[str]) -> list[str]:
    if len(set(tags)) != len(tags):
        raise ValueError("tags must not repeat")
    return tags


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateActionItemRequest(_Strict):
    """Body of POST /action-items."""

    title: Title
    description: Description | None = None
    assignee: Assignee | None = None
    priority: Priority = Priority.NORMAL
    dueDate: DueDate | None = None
    tags: Tags = Field(default_factory=list)

    _title = field_validator("title")(_trimmed_title)

    @field_validator("dueDate")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        return _real_date(value) if value is not None else None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _unique(value)


NOT_NULLABLE = ("title", "priority", "status", "tags")


class UpdateActionItemRequest(_Strict):
    """Body of PATCH /action-items/{id}: a JSON merge patch (RFC 7396)."""

    title: Title | None = None
    description: Description | None = None
    assignee: Assignee | None = None
    priority: Priority | None = None
    dueDate: DueDate | None = None
    tags: Tags | None = None
    status: Status | None = None

    _title = field_validator("title")(lambda v: _trimmed_title(v) if v is not None else None)

    @field_validator("dueDate")
    @classmethod
    def _date(cls, value: str | None) -> str | None:
        return _real_date(value) if value is not None else None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value) if value is not None else None


def merge_patch_violations(data: dict[str, Any]) -> list[dict[str, str]]:
    """The merge-patch rules pydantic cannot see: an empty patch, nulls that cannot clear."""
    if not data:
        return [{"field": "body", "message": "an empty patch changes nothing"}]
    return [
        {"field": name, "message": "cannot be null (it cannot be cleared)"}
        for name in NOT_NULLABLE
        if name in data and data[name] is None
    ]
