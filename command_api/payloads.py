"""Translate a validated request into the domain's command payload."""

from __future__ import annotations

from command_api.requests import CreateActionItemRequest, UpdateActionItemRequest
from domain.commands import CreateActionItem, UpdateActionItem


def create_payload(request: CreateActionItemRequest) -> CreateActionItem:
    return CreateActionItem(
        title=request.title,
        description=request.description,
        assignee=request.assignee,
        priority=request.priority,
        dueDate=request.dueDate,
        tags=tuple(request.tags),
    )


def update_payload(request: UpdateActionItemRequest) -> UpdateActionItem:
    fields = frozenset(request.model_fields_set)
    return UpdateActionItem(
        fields_set=fields,
        **{name: getattr(request, name) for name in fields if name != "tags"},
        tags=tuple(request.tags) if request.tags is not None else None,
    )
