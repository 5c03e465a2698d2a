"""Reading your own writes through the real processes: command API, Kafka, projector, query API.

No test here polls: every read after a write carries the write's Consistency-Token
and is expected to answer correctly the first time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningSystem
from tests.support import services
from tests.support.auth import caller_headers

pytestmark = pytest.mark.e2e


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=caller_headers("anonymous"), timeout=15) as client:
        yield client


def create(http: httpx.Client, system: RunningSystem, **body: object) -> dict[str, Any]:
    response = http.post(f"{system.command_url}/action-items", json={"title": "t", **body})
    assert response.status_code == 202, response.text
    return dict(response.json())


def patch(
    http: httpx.Client, system: RunningSystem, item_id: str, **body: object
) -> dict[str, Any]:
    response = http.patch(f"{system.command_url}/action-items/{item_id}", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


def token(accepted: dict[str, Any]) -> dict[str, str]:
    return {"Consistency-Token": accepted["consistencyToken"]}


def test_reads_after_writes_with_the_token_answer_at_once_without_polling(
    system: RunningSystem, http: httpx.Client
) -> None:
    q = system.query_url
    created = create(http, system, title="read me", assignee="ana", tags=["ops"])
    item_id = created["actionItemId"]
    item_url = f"{q}/action-items/{item_id}"

    # POST, then at once GET with the token: the item, the command's status, the list
    read = http.get(item_url, headers=token(created))
    assert read.status_code == 200, read.text
    assert (read.json()["title"], read.headers["ETag"]) == ("read me", '"1"')
    status = http.get(f"{q}/commands/{created['commandId']}", headers=token(created))
    assert status.status_code == 200, status.text
    assert (status.json()["status"], status.json()["exception"]) == ("applied", None)
    another = create(http, system, title="listed", assignee="list-me")
    listed = http.get(f"{q}/action-items", params={"assignee": "list-me"}, headers=token(another))
    assert [i["id"] for i in listed.json()["items"]] == [another["actionItemId"]]

    # PATCH, then GET with its token: the new version, every time
    for n in range(2, 6):
        changed = patch(http, system, item_id, title=f"v{n}", priority="urgent")
        read = http.get(item_url, headers=token(changed))
        assert read.status_code == 200
        assert (read.json()["title"], read.json()["version"]) == (f"v{n}", n)
        assert read.headers["ETag"] == f'"{n}"'
    assert http.get(item_url, headers={"If-None-Match": '"5"'}).status_code == 304
    assert http.get(item_url, headers={"If-None-Match": '"4"'}).status_code == 200

    # a rejected command: its status carries the exception, the item's Exceptions node too
    patch(http, system, item_id, status="done")
    bad = patch(http, system, item_id, status="in_progress")  # done -> in_progress: not allowed
    status = http.get(f"{q}/commands/{bad['commandId']}", headers=token(bad))
    assert status.status_code == 200
    body = status.json()
    assert (body["status"], body["exception"]["code"]) == ("rejected", "INVALID_TRANSITION")
    item = http.get(item_url).json()
    assert (item["status"], item["version"]) == ("done", 6)
    assert [e["commandId"] for e in item["exceptions"]] == [bad["commandId"]]

    for path in (f"/action-items/{uuid.uuid4()}", f"/commands/{uuid.uuid4()}"):
        response = http.get(f"{q}{path}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


def read_honouring_retry_after(
    http: httpx.Client, url: str, headers: dict[str, str], attempts: int = 4
) -> httpx.Response:
    """What a client does with a 503: wait Retry-After, send the same token again (bounded)."""
    for _ in range(attempts - 1):
        response = http.get(url, headers=headers)
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers["Retry-After"]))
    return http.get(url, headers=headers)


def test_a_token_not_processed_within_the_bound_is_503_then_answers_once_processed(
    system: RunningSystem, http: httpx.Client
) -> None:
    port = services.free_port()
    bounded = services.query_api_process(
        {**system.stack.env, "CONSISTENCY_WAIT_SECONDS": "1", "RETRY_AFTER_SECONDS": "2"},
        port,
        system.stack.log_dir,
    ).start()
    try:
        system.projector.stop()
        accepted = create(http, system, title="while the projector is down")
        item_url = f"/action-items/{accepted['actionItemId']}"
        started = time.monotonic()
        response = http.get(f"http://127.0.0.1:{port}{item_url}", headers=token(accepted))
        waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "2"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["commandId"] == accepted["commandId"]
        assert 1 <= waited < 6, waited  # the bound, not a hang (generous: shared cores)
        system.projector.start()
        again = read_honouring_retry_after(http, f"{system.query_url}{item_url}", token(accepted))
        assert again.status_code == 200, again.text
        assert again.json()["title"] == "while the projector is down"
    finally:
        bounded.stop()
