"""The write requests as the contract defines them; validation names the offending field.

The JSON Schema these models publish (OpenAPI) says what the contract says and
never less: whatever the schema forbids, validation rejects too. Rules a JSON
Schema cannot state exactly (a title's length *after trimming*, a real calendar
date) are stated in the field's description and enforced here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from domain.commands import NOT_NULLABLE, PATCHABLE_FIELDS, Priority, Status
from domain.limits import (
    ASSIGNEE_MAX,
    DATE_PATTERN,
    DESCRIPTION_MAX,
    TAG_MAX,
    TAGS_MAX,
    TITLE_MAX,
    TITLE_PATTERN,
    real_date,
    trimmed_title,
    unique,
)

Title = Annotated[
    StrictStr,
    Field(
        min_length=1,
        description=f"1..{TITLE_MAX} characters after trimming surrounding whitespace",
        examples=["Write the runbook"],
        # Published for clients; enforced by trimmed_title, whose message names the rule.
        json_schema_extra={"pattern": TITLE_PATTERN},
    ),
    AfterValidator(trimmed_title),
]
Description = Annotated[StrictStr, Field(max_length=DESCRIPTION_MAX)]
Assignee = Annotated[StrictStr, Field(min_length=1, max_length=ASSIGNEE_MAX)]
Tag = Annotated[StrictStr, Field(min_length=1, max_length=TAG_MAX)]
DueDate = Annotated[
    StrictStr,
    Field(
        pattern=DATE_PATTERN,
        description="a real calendar date, YYYY-MM-DD",
        examples=["2026-12-31"],
        json_schema_extra={"format": "date"},
    ),
    AfterValidator(real_date),
]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=TAGS_MAX, description="no duplicates", json_schema_extra={"uniqueItems": True}
    ),
    AfterValidator(unique),
]


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


CLEARABLE = [name for name in PATCHABLE_FIELDS if name not in NOT_NULLABLE]


def _patch_schema(schema: dict[str, Any]) -> None:
    """The patch's JSON Schema: fields that cannot be cleared are not nullable; never empty."""
    properties = schema.get("properties", {})
    for name in NOT_NULLABLE:
        prop = properties.get(name)
        if prop is None or "anyOf" not in prop:
            continue
        branches = [b for b in prop.pop("anyOf") if b.get("type") != "null"]
        prop.pop("default", None)
        if len(branches) == 1:
            prop.update(branches[0])
        else:  # pragma: no cover - every patch field has one non-null type
            prop["anyOf"] = branches
    schema["minProperties"] = 1
    schema["description"] = (
        "A JSON merge patch (RFC 7396): only the members present change; null clears "
        f"{', '.join(CLEARABLE[:-1])} and {CLEARABLE[-1]}. An empty patch is a 422."
    )


class UpdateActionItemRequest(BaseModel):
    """Body of PATCH /action-items/{id}: a JSON merge patch (RFC 7396)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)

    title: Title | None = None
    description: Description | None = None
    assignee: Assignee | None = None
    priority: Priority | None = None
    dueDate: DueDate | None = None
    tags: Tags | None = None
    status: Status | None = None


def merge_patch_violations(data: dict[str, Any]) -> list[dict[str, str]]:
    """The merge-patch rules pydantic cannot see: an empty patch, nulls that cannot clear."""
    if not data:
        return [{"field": "body", "message": "an empty patch changes nothing"}]
    return [
        {"field": name, "message": "cannot be null (it cannot be cleared)"}
        for name in NOT_NULLABLE
        if name in data and data[name] is None
    ]
