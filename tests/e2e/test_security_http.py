"""Hardening of the real processes: the caller is the token's sub, limits, headers, bad HTTP.

- Two callers with one Idempotency-Key get two commands; one caller's retry gets the same one
  (X-Client-Id changes nothing).
- The per-caller rate limit answers 429 with Retry-After, and the caller gets in again after it.
- Every answer carries the security headers and no server banner; CORS is closed.
- Malformed HTTP is never answered 5xx, and the answer reveals nothing.
- The correlation id of a request reaches the projector's log line and the Exceptions entry of
  the command it rejected.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import RunningSystem, Stack
from tests.support.auth import ADMIN, READ, WRITE, bearer
from tests.support.command_api import running_command_api

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_the_idempotency_key_is_scoped_to_the_token_sub(system: RunningSystem) -> None:
    url = f"{system.command_url}/action-items"
    body = {"title": "same key"}
    alice = bearer("alice", WRITE)
    first = httpx.post(url, json=body, headers={**alice, "Idempotency-Key": "k-1"}, timeout=15)
    retry = httpx.post(url, json=body, headers={**alice, "Idempotency-Key": "k-1"}, timeout=15)
    # Claiming another client id changes nothing: the caller is the token's sub.
    claimed = httpx.post(
        url,
        json=body,
        headers={**alice, "Idempotency-Key": "k-1", "X-Client-Id": "bob"},
        timeout=15,
    )
    bob = httpx.post(
        url, json=body, headers={**bearer("bob", WRITE), "Idempotency-Key": "k-1"}, timeout=15
    )
    for answer in (first, retry, claimed, bob):
        assert answer.status_code == 202, answer.text
    ids = [a.json()["commandId"] for a in (first, retry, claimed, bob)]
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] != ids[0]
    items = {a.json()["actionItemId"] for a in (first, bob)}
    assert len(items) == 2

    # Both creates are applied, each to its own item.
    for answer in (first, bob):
        read = httpx.get(
            f"{system.query_url}/action-items/{answer.json()['actionItemId']}",
            headers={
                **bearer("reader", READ),
                "Consistency-Token": answer.json()["consistencyToken"],
            },
            timeout=30,
        )
        assert read.status_code == 200, read.text


def test_the_rate_limit_answers_429_then_lets_the_caller_in_again(
    stack: Stack, tmp_path: Path
) -> None:
    with running_command_api(stack.env, tmp_path, RATE_LIMIT_WRITES="3 per 2 seconds") as api:
        url = f"{api.url}/action-items"
        alice, bob = bearer("alice", WRITE), bearer("bob", WRITE)
        answers = [
            httpx.post(url, json={"title": "x"}, headers=alice, timeout=15) for _ in range(4)
        ]
        assert [a.status_code for a in answers[:3]] == [202, 202, 202], [a.text for a in answers]
        limited = answers[3]
        assert limited.status_code == 429, limited.text
        assert limited.headers["content-type"] == "application/problem+json"
        wait = int(limited.headers["retry-after"])
        assert 1 <= wait <= 2
        # Another caller is not limited by alice's requests.
        assert httpx.post(url, json={"title": "x"}, headers=bob, timeout=15).status_code == 202
        time.sleep(wait + 0.2)
        again = httpx.post(url, json={"title": "x"}, headers=alice, timeout=15)
        assert again.status_code == 202, again.text


def test_answers_carry_security_headers_no_banner_and_cors_is_closed(
    system: RunningSystem,
) -> None:
    admin = bearer("operator", ADMIN, READ, WRITE)
    for url in (system.command_url, system.query_url, system.projector_url):
        for path in ("/healthz", "/metrics", "/nope"):
            answer = httpx.get(f"{url}{path}", headers=admin, timeout=10)
            assert "server" not in answer.headers, (url, path)
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers.get(name) == value, (url, path, name)
        preflight = httpx.options(
            f"{url}/healthz",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
            timeout=10,
        )
        assert "access-control-allow-origin" not in preflight.headers, url


def raw(port: int, request: bytes) -> bytes:
    """What the server answered before it closed (it may close mid-request: that is no 5xx)."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        try:
            conn.sendall(request)
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
    return b"".join(chunks)


def test_malformed_http_is_never_a_5xx(system: RunningSystem) -> None:
    token = bearer("w", WRITE)["Authorization"].encode()
    requests = {
        "garbage request line": b"HELLO\r\n\r\n",
        "bad version": b"GET /healthz HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
        "header without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nbroken\r\n\r\n",
        "bad percent encoding": b"GET /action-items/%zz%ff HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: " + token + b"\r\nConnection: close\r\n\r\n",
        "huge header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * 200_000
        + b"\r\n\r\n",
        "body shorter than content-length": b"POST /action-items HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: " + token + b"\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\nConnection: close\r\n\r\n{"title"',
        "invalid json": b"POST /action-items HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: " + token + b"\r\nContent-Type: application/json\r\n"
        b'Content-Length: 9\r\nConnection: close\r\n\r\n{"title":',
        "non-utf8 json": b"POST /action-items HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: " + token + b"\r\nContent-Type: application/json\r\n"
        b'Content-Length: 14\r\nConnection: close\r\n\r\n{"title":"\xff"}',
        "non-ascii header value": b"POST /action-items HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    }
    port = int(system.command_url.rsplit(":", 1)[1])
    for name, request in requests.items():
        answer = raw(port, request)
        if not answer:  # the server may just close a connection it cannot parse
            continue
        status_line = answer.split(b"\r\n", 1)[0]
        status = int(status_line.split()[1])
        # httptools is lenient with some (HTTP/9.9 is served as 1.1): never a 5xx is the rule.
        assert status < 500, (name, status_line, answer[:300])
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\nserver:" not in head, (name, head)
        assert b"traceback" not in answer.lower() and b"uvicorn" not in answer.lower(), name


def test_the_correlation_id_reaches_the_projector_log_and_the_exceptions_entry(
    system: RunningSystem,
) -> None:
    writer = bearer("w", WRITE)
    created = httpx.post(
        f"{system.command_url}/action-items", json={"title": "c"}, headers=writer, timeout=15
    )
    assert created.status_code == 202, created.text
    item = created.json()["actionItemId"]
    correlation = f"corr-{uuid.uuid4()}"
    rejected = httpx.patch(
        f"{system.command_url}/action-items/{item}",
        json={"title": "conflict"},
        headers={
            **writer,
            "Content-Type": "application/merge-patch+json",
            "If-Match": '"7"',
            "X-Correlation-Id": correlation,
        },
        timeout=15,
    )
    assert rejected.status_code == 202, rejected.text
    assert rejected.headers["X-Correlation-Id"] == correlation
    read = httpx.get(
        f"{system.query_url}/action-items/{item}",
        headers={**bearer("r", READ), "Consistency-Token": rejected.json()["consistencyToken"]},
        timeout=30,
    )
    assert read.status_code == 200, read.text
    [entry] = read.json()["exceptions"]
    assert entry["code"] == "VERSION_CONFLICT"
    assert entry["commandId"] == rejected.json()["commandId"]
    assert entry["correlationId"] == correlation

    lines = [
        json.loads(line)
        for line in system.projector.log_path.read_text().splitlines()
        if line.startswith("{") and correlation in line
    ]
    assert lines, f"no projector log line carries {correlation}"
    assert any(
        line.get("commandId") == rejected.json()["commandId"]
        and line.get("correlationId") == correlation
        for line in lines
    ), lines
