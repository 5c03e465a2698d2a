"""Translate a validated request into the domain's command payload, field by field by name.

The request models (command_api/requests.py) name their fields as the command
dataclasses (domain/commands.py) do; a JSON array becomes a tuple.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from command_api.requests import CreateActionItemRequest, UpdateActionItemRequest
from domain.commands import CreateActionItem, UpdateActionItem


def _command_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def create_payload(request: CreateActionItemRequest) -> CreateActionItem:
    given = {f.name: _command_value(getattr(request, f.name)) for f in fields(CreateActionItem)}
    return CreateActionItem(**given)


def update_payload(request: UpdateActionItemRequest) -> UpdateActionItem:
    names = request.model_fields_set
    given = {name: _command_value(getattr(request, name)) for name in names}
    return UpdateActionItem(fields_set=frozenset(names), **given)
