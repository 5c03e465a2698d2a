"""The query API's OpenAPI document says what the contract says ("Query API", "Every HTTP service").

Real responses are checked against these schemas by the schemathesis e2e test;
this test pins the schemas themselves to the contract.
"""

from __future__ import annotations

from typing import Any

import pytest

from query_api.app import create_app
from query_api.settings import QueryApiSettings

# contract.md, "GET /action-items/{id}", ".../exceptions" and "GET /commands/{commandId}"
ITEM_FIELDS = {
    "id", "title", "description", "assignee", "priority", "dueDate", "tags", "status",
    "version", "createdAt", "updatedAt", "exceptions", "exceptionCount",
}  # fmt: skip
NULLABLE_ITEM_FIELDS = {"description", "assignee", "dueDate"}
EXCEPTION_FIELDS = {
    "commandId", "code", "message", "occurredAt", "partition", "offset", "correlationId",
}  # fmt: skip
STATUS_FIELDS = {"commandId", "actionItemId", "status", "exception", "processedAt"}
PRIORITIES = ["low", "normal", "high", "urgent"]
STATUSES = ["open", "in_progress", "done", "cancelled"]


@pytest.fixture(scope="module")
def spec(mongodb_uri: str) -> dict[str, Any]:
    app = create_app(QueryApiSettings(mongodb_uri=mongodb_uri, mongodb_database="unused"))
    return app.openapi()


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def body_schema(spec: dict[str, Any], path: str, status: str, media: str) -> dict[str, Any]:
    response = spec["paths"][path]["get"]["responses"][status]
    return resolve(spec, response["content"][media]["schema"])


def is_nullable(schema: dict[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in schema.get("anyOf", []))


def test_the_item_schema_is_the_contracts_item(spec: dict[str, Any]) -> None:
    item = body_schema(spec, "/action-items/{actionItemId}", "200", "application/json")
    assert set(item["properties"]) == ITEM_FIELDS
    assert set(item["required"]) == ITEM_FIELDS  # always present, null when empty
    assert item["additionalProperties"] is False
    nullable = {name for name, s in item["properties"].items() if is_nullable(s)}
    assert nullable == NULLABLE_ITEM_FIELDS
    assert resolve(spec, item["properties"]["priority"])["enum"] == PRIORITIES
    assert resolve(spec, item["properties"]["status"])["enum"] == STATUSES
    entry = resolve(spec, item["properties"]["exceptions"]["items"])
    assert set(entry["properties"]) == set(entry["required"]) == EXCEPTION_FIELDS


def test_the_list_and_command_status_schemas(spec: dict[str, Any]) -> None:
    page = body_schema(spec, "/action-items", "200", "application/json")
    assert set(page["properties"]) == set(page["required"]) == {"items", "nextCursor"}
    assert resolve(spec, page["properties"]["items"]["items"])["title"] == "ActionItem"
    assert is_nullable(page["properties"]["nextCursor"])
    status = body_schema(spec, "/commands/{commandId}", "200", "application/json")
    assert set(status["properties"]) == set(status["required"]) == STATUS_FIELDS
    assert status["properties"]["status"]["enum"] == ["applied", "rejected"]
    assert is_nullable(status["properties"]["exception"])


def test_the_exceptions_history_schema_and_parameters(spec: dict[str, Any]) -> None:
    path = "/action-items/{actionItemId}/exceptions"
    page = body_schema(spec, path, "200", "application/json")
    assert set(page["properties"]) == set(page["required"]) == {"items", "nextCursor"}
    entry = resolve(spec, page["properties"]["items"]["items"])
    assert set(entry["properties"]) == EXCEPTION_FIELDS
    assert is_nullable(page["properties"]["nextCursor"])
    params = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
    assert {n for n, p in params.items() if p["in"] == "query"} == {"limit", "cursor"}
    limit = params["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 200, 50)


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/action-items/{actionItemId}", {"400", "401", "403", "404", "422", "503"}),
        (
            "/action-items/{actionItemId}/exceptions",
            {"400", "401", "403", "404", "422", "503"},
        ),
        ("/action-items", {"400", "401", "403", "422", "503"}),
        ("/commands/{commandId}", {"400", "401", "403", "404", "422", "503"}),
        ("/readyz", {"401", "403", "503"}),
    ],
)
def test_errors_are_problem_json_and_503_says_retry_after(
    spec: dict[str, Any], path: str, statuses: set[str]
) -> None:
    responses = spec["paths"][path]["get"]["responses"]
    assert {s for s in responses if s >= "400"} == statuses
    for status in statuses:
        problem = body_schema(spec, path, status, "application/problem+json")
        assert {"type", "title", "status", "detail"} <= set(problem["required"])
        assert "errors" in problem["properties"]
    assert "Retry-After" in responses["503"]["headers"]


def test_headers_etag_304_and_the_consistency_token(spec: dict[str, Any]) -> None:
    for conditional in ("/action-items/{actionItemId}", "/action-items/{actionItemId}/exceptions"):
        item = spec["paths"][conditional]["get"]
        assert "ETag" in item["responses"]["200"]["headers"]
        assert "ETag" in item["responses"]["304"]["headers"]
        assert "content" not in item["responses"]["304"]
        assert ("If-None-Match", "header") in {(p["name"], p["in"]) for p in item["parameters"]}
    for path in (
        "/action-items/{actionItemId}",
        "/action-items/{actionItemId}/exceptions",
        "/action-items",
        "/commands/{commandId}",
    ):
        params = {(p["name"], p["in"]) for p in spec["paths"][path]["get"]["parameters"]}
        assert ("Consistency-Token", "header") in params, path


def test_list_parameters_are_the_contracts(spec: dict[str, Any]) -> None:
    params = {p["name"]: p for p in spec["paths"]["/action-items"]["get"]["parameters"]}
    query = {name for name, p in params.items() if p["in"] == "query"}
    assert query == {"status", "assignee", "priority", "tag", "limit", "cursor"}
    limit = params["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 200, 50)

    def enum(name: str) -> list[str]:
        schema = params[name]["schema"]
        options = [resolve(spec, o) for o in schema.get("anyOf", [schema])]
        return next(o["enum"] for o in options if "enum" in o)

    assert enum("status") == STATUSES
    assert enum("priority") == PRIORITIES


def test_every_service_endpoint_is_documented(spec: dict[str, Any]) -> None:
    assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
