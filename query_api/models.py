"""The query API's response shapes, as the contract defines them (used for the OpenAPI document).

Handlers return the stored documents as they are (no per-request model
validation on the hot path); tests check real responses against these schemas.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.commands import Priority, Status

Timestamp = Annotated[
    str, Field(description="UTC, ISO 8601 with milliseconds", examples=["2026-11-25T10:00:00.000Z"])
]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExceptionEntry(_Closed):
    """One command that was accepted but failed during asynchronous processing."""

    commandId: Uuid
    code: str = Field(examples=["VERSION_CONFLICT", "INVALID_TRANSITION", "ALREADY_EXISTS"])
    message: str
    occurredAt: Timestamp
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    correlationId: str | None = Field(
        description="The X-Correlation-Id of the request that sent the command (null in entries "
        "recorded before it was kept)",
    )


class ActionItem(_Closed):
    # A field added later gets a default here: documents projected before it lack it, and
    # query_api.repository.public_item answers them with this default. The field stays
    # required in the published schema (every answer has it). (A comment, not a docstring:
    # a docstring would become the schema's description.)
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    id: Uuid
    title: str
    description: str | None
    assignee: str | None
    priority: Priority
    dueDate: str | None = Field(json_schema_extra={"format": "date"})
    tags: list[str]
    status: Status
    version: int = Field(ge=1)
    createdAt: Timestamp
    updatedAt: Timestamp
    exceptions: list[ExceptionEntry] = Field(
        description="the 20 most recent entries, oldest first; "
        "GET /action-items/{actionItemId}/exceptions has them all"
    )
    exceptionCount: int = Field(ge=0, description="every entry ever recorded on the item")


class ActionItemPage(_Closed):
    items: list[ActionItem]
    nextCursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page"
    )


class ExceptionPage(_Closed):
    items: list[ExceptionEntry] = Field(description="oldest first (log order)")
    nextCursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page"
    )


class CommandStatus(_Closed):
    commandId: Uuid
    actionItemId: Uuid
    status: Literal["applied", "rejected"]
    exception: ExceptionEntry | None
    processedAt: Timestamp


class Health(_Closed):
    status: Literal["ok"]


class Ready(_Closed):
    status: Literal["ready"]
