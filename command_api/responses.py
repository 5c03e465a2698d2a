"""What a write answers, as bodies and as the OpenAPI responses that document them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_JSON = "application/problem+json"


class Accepted(BaseModel):
    """202: the command is durable on the log (acks=all); the projector will apply it."""

    commandId: str = Field(description="Deterministic for a retry with the same Idempotency-Key")
    actionItemId: str
    status: str = "accepted"
    consistencyToken: str = Field(
        description="Send as Consistency-Token to the query API to read your own write"
    )


class LogUnavailableProblem(BaseModel):
    """503: the log did not confirm the command within the bound; retry with the same key."""

    model_config = ConfigDict(title="LogUnavailableProblem")

    type: str
    title: str
    status: int
    detail: str
    commandId: str = Field(description="The command that was not confirmed")
    actionItemId: str
    maybeWritten: bool = Field(
        description="True when the broker may have taken this attempt after all (a timeout); "
        "a retry with the same Idempotency-Key still takes effect at most once"
    )


def _problem(description: str, ref: str = "Problem") -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def write_responses() -> dict[int | str, dict[str, Any]]:
    """The documented answers of POST and PATCH /action-items."""
    return {
        202: {
            "description": "Accepted: the broker acknowledged the command with acks=all",
            "headers": {
                "Location": {
                    "description": "The command's status on the query API",
                    "schema": {"type": "string", "format": "uri"},
                },
                "X-Correlation-Id": {
                    "description": "The correlation id carried by the command",
                    "schema": {"type": "string"},
                },
            },
        },
        400: _problem("A malformed header, or a body that is not JSON"),
        413: _problem("The body is larger than 64 KiB"),
        415: _problem("Content-Type is not one of the accepted JSON media types"),
        422: _problem("The body breaks a rule of the contract; errors names each field"),
        503: {
            **_problem(
                "The log did not acknowledge within the bound; the command was not confirmed. "
                "Retrying with the same Idempotency-Key is always safe.",
                "LogUnavailableProblem",
            ),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
    }
