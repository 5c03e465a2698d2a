"""The command API process over HTTP: every bad input is a counted 4xx problem, never a write.

Also: the 64 KiB limit (declared and chunked bodies), /healthz, /readyz,
/metrics and an OpenAPI document that states the contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.auth import caller_headers, operator_headers
from tests.support.command_api import CommandApi, own_topics, running_command_api
from tests.support.command_log import read_records

LIMIT = 64 * 1024
ITEM = "0c0377a8-8dee-44d3-8e5b-7fabadddde0e"
JSON = {"Content-Type": "application/json"}
PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandApi]:
    log_dir: Path = tmp_path_factory.mktemp("command-http")
    with own_topics(kafka_bootstrap) as (_, env), running_command_api(env, log_dir) as running:
        yield running


def padded(size: int) -> bytes:
    """A valid create body of exactly ``size`` bytes (JSON whitespace as padding)."""
    head, tail = b'{"title": "padded"', b"}"
    return head + b" " * (size - len(head) - len(tail)) + tail


def chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# (method, path, headers, body bytes, expected status, field named in errors)
BAD: list[tuple[str, str, dict[str, str], bytes, int, str | None]] = [
    ("POST", "/action-items", JSON, b'{"title": "x", "colour": "red"}', 422, "colour"),
    ("POST", "/action-items", JSON, b'{"title": 5}', 422, "title"),
    ("POST", "/action-items", JSON, b'{"title": "   "}', 422, "title"),
    ("POST", "/action-items", JSON, b'{"title": "x", "dueDate": "2026-02-30"}', 422, "dueDate"),
    ("POST", "/action-items", JSON, b'{"title": "x", "dueDate": "31.12.2026"}', 422, "dueDate"),
    ("POST", "/action-items", JSON, b'{"title": "x", "tags": ["a", "a"]}', 422, "tags"),
    ("POST", "/action-items", JSON, b'{"title": "x", "tags": [""]}', 422, "tags[0]"),
    ("POST", "/action-items", JSON, b'{"title": "x", "priority": "asap"}', 422, "priority"),
    ("POST", "/action-items", JSON, b'{"title": "x", "status": "done"}', 422, "status"),
    ("POST", "/action-items", JSON, b'{"description": "no title"}', 422, "title"),
    ("POST", "/action-items", JSON, b'{"title": "a", "title": "b"}', 422, "title"),
    ("POST", "/action-items", JSON, b'{"title": "\\ud800"}', 422, "title"),
    ("POST", "/action-items", JSON, b"[]", 422, "body"),
    ("POST", "/action-items", JSON, b"{", 400, "body"),
    ("POST", "/action-items", JSON, b"", 400, "body"),
    ("POST", "/action-items", JSON, b"\xc3\x28", 400, "body"),
    ("POST", "/action-items", JSON, b"[" * 50_000, 400, "body"),
    ("POST", "/action-items", JSON, b'{"title": NaN}', 400, "body"),
    ("POST", "/action-items", {"Content-Type": "text/plain"}, b'{"title": "x"}', 415, None),
    ("POST", "/action-items", {}, b'{"title": "x"}', 415, "Content-Type"),
    ("POST", "/action-items", PATCH, b'{"title": "x"}', 415, "Content-Type"),
    (
        "POST",
        "/action-items",
        {"Content-Type": "application/json; charset=iso-8859-1"},
        b'{"title": "x"}',
        415,
        "Content-Type",
    ),
    ("POST", "/action-items", JSON, padded(LIMIT + 1), 413, "body"),
    ("POST", "/action-items", {**JSON, "Idempotency-Key": ""}, b'{"title": "x"}', 400, None),
    ("POST", "/action-items", {**JSON, "X-Client-Id": "a b"}, b'{"title": "x"}', 400, None),
    ("POST", "/action-items", {**JSON, "If-Match": '"1"'}, b'{"title": "x"}', 400, "If-Match"),
    ("PATCH", f"/action-items/{ITEM}", PATCH, b"{}", 422, "body"),
    ("PATCH", f"/action-items/{ITEM}", PATCH, b'{"title": null}', 422, "title"),
    ("PATCH", f"/action-items/{ITEM}", PATCH, b'{"status": null}', 422, "status"),
    ("PATCH", f"/action-items/{ITEM}", PATCH, b'{"tags": null}', 422, "tags"),
    ("PATCH", f"/action-items/{ITEM}", PATCH, b'{"status": "closed"}', 422, "status"),
    ("PATCH", f"/action-items/{ITEM}", PATCH, b'{"id": "x"}', 422, "id"),
    ("PATCH", "/action-items/not-a-uuid", PATCH, b'{"title": "x"}', 422, "actionItemId"),
    ("PATCH", f"/action-items/{ITEM}", {**PATCH, "If-Match": "1"}, b'{"title": "x"}', 400, None),
    (
        "PATCH",
        f"/action-items/{ITEM}",
        {**PATCH, "If-Match": 'W/"1"'},
        b'{"title": "x"}',
        400,
        None,
    ),
    ("PATCH", f"/action-items/{ITEM}", {"Content-Type": "text/json"}, b'{"title": "x"}', 415, None),
    ("PUT", f"/action-items/{ITEM}", PATCH, b'{"title": "x"}', 405, None),
    ("GET", "/action-items", {}, b"", 405, None),
    ("POST", "/nowhere", JSON, b"{}", 404, None),
]


def test_every_bad_input_is_a_counted_4xx_problem_and_writes_nothing(api: CommandApi) -> None:
    bootstrap, topic = api.env["KAFKA_BOOTSTRAP_SERVERS"], api.env["COMMANDS_TOPIC"]
    on_log_before = len(read_records(bootstrap, topic))
    counted_before = {
        s: api.metric("command_api_requests_rejected_total", status=str(s))
        for s in {case[4] for case in BAD}
    }
    with httpx.Client(headers=caller_headers("anonymous"), base_url=api.url, timeout=15) as client:
        for method, path, headers, body, status, field in BAD:
            answer = client.request(method, path, headers=headers, content=body)
            case = f"{method} {path} {headers} {body[:60]!r}"
            assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text}"
            assert answer.headers["content-type"] == "application/problem+json", case
            problem = answer.json()
            assert {"type", "title", "status", "detail"} <= problem.keys(), case
            assert problem["status"] == status
            assert "Traceback" not in answer.text
            if field is not None:
                assert field in [e["field"] for e in problem["errors"]], f"{case}: {problem}"
    for status in counted_before:
        expected = counted_before[status] + sum(1 for case in BAD if case[4] == status)
        assert api.metric("command_api_requests_rejected_total", status=str(status)) == expected
    assert len(read_records(bootstrap, topic)) == on_log_before


def test_the_body_limit_is_64_kib_declared_or_chunked(api: CommandApi) -> None:
    with httpx.Client(
        base_url=api.url, timeout=15, headers={**JSON, **caller_headers("anonymous")}
    ) as client:
        exact = client.post("/action-items", content=padded(LIMIT))
        assert exact.status_code == 202, exact.text
        over = client.post("/action-items", content=padded(LIMIT + 1))
        assert over.status_code == 413
        # an iterator body goes out chunked: no Content-Length for the server to check
        chunked_ok = client.post("/action-items", content=chunks(padded(LIMIT)))
        assert chunked_ok.status_code == 202, chunked_ok.text
        chunked_over = client.post("/action-items", content=chunks(padded(4 * LIMIT)))
        assert chunked_over.status_code == 413
        assert chunked_over.request.headers.get("transfer-encoding") == "chunked"
        assert chunked_over.json()["errors"] == [
            {"field": "body", "message": f"larger than {LIMIT} bytes"}
        ]
        # the server is fine afterwards, on the same connection pool
        assert client.post("/action-items", content=b'{"title": "after"}').status_code == 202


def test_health_readiness_and_metrics(api: CommandApi) -> None:
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api.url}/readyz", headers=operator_headers()).status_code == 200
    assert api.post({"title": "counted"}).status_code == 202
    text = httpx.get(f"{api.url}/metrics", headers=operator_headers()).text
    for name in (
        "command_api_commands_accepted_total",
        "command_api_requests_rejected_total",
        "command_api_log_unavailable_total",
        "command_api_delivery_seconds_bucket",
        "command_api_retries_from_memory_total",
        "command_api_late_acks_total",
        "command_api_deliveries_in_flight",
        "command_api_deliveries_pending_after_503",
        "command_api_key_reuses_total",
        "command_api_key_registry_unavailable_total",
    ):
        assert name in text, name
    assert api.metric("command_api_delivery_seconds_count") >= 1
    assert api.metric("command_api_commands_accepted_total", kind="create") >= 1


def test_openapi_states_the_write_contract(api: CommandApi) -> None:
    doc = httpx.get(f"{api.url}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/action-items"]["post"]
    update = doc["paths"]["/action-items/{actionItemId}"]["patch"]
    assert set(create["requestBody"]["content"]) == {"application/json"}
    assert set(update["requestBody"]["content"]) == {
        "application/json",
        "application/merge-patch+json",
    }
    for operation in (create, update):
        responses = operation["responses"]
        assert {"202", "400", "413", "415", "422", "503"} <= set(responses)
        assert responses["202"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Accepted"
        }
        assert "Location" in responses["202"]["headers"]
        for status in ("400", "413", "415", "422"):
            assert set(responses[status]["content"]) == {"application/problem+json"}
        unavailable = responses["503"]
        assert "Retry-After" in unavailable["headers"]
        ref = unavailable["content"]["application/problem+json"]["schema"]["$ref"]
        assert {"commandId", "maybeWritten"} <= set(schemas[ref.rsplit("/", 1)[1]]["properties"])
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"Idempotency-Key", "X-Client-Id", "X-Correlation-Id"} <= headers
    assert "If-Match" in {p["name"] for p in update["parameters"]}
    assert "If-Match" not in {p["name"] for p in create["parameters"]}

    body = schemas["CreateActionItemRequest"]
    assert body["required"] == ["title"]
    assert body["additionalProperties"] is False
    props = body["properties"]
    assert set(props) == {"title", "description", "assignee", "priority", "dueDate", "tags"}
    assert props["tags"]["maxItems"] == 20 and props["tags"]["uniqueItems"] is True
    assert props["tags"]["items"] == {"type": "string", "minLength": 1, "maxLength": 50}
    assert schemas["Priority"]["enum"] == ["low", "normal", "high", "urgent"]
    patch = schemas["UpdateActionItemRequest"]
    assert patch["minProperties"] == 1 and patch["additionalProperties"] is False
    assert schemas["Status"]["enum"] == ["open", "in_progress", "done", "cancelled"]
    assert "Problem" in schemas
    assert httpx.get(f"{api.url}/docs").status_code == 200
