"""Who may call, on the three real processes: every route but /healthz needs the right token.

Each operation of each OpenAPI document (and the projector's operator routes) is
called with no token, a malformed one, an expired one, one signed by another key,
``alg=none``, the wrong audience and issuer, and one without the route's scope:
401 with ``WWW-Authenticate: Bearer`` for the first ones, 403 for the last, each
a problem body that names no key, user or library. With the route's scope the
answer is neither 401 nor 403. A read-only token never writes.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from servicekit.auth import ADMIN, READ, WRITE
from tests.conftest import RunningSystem
from tests.support.auth import bearer, refused_tokens

OPEN = {("GET", "/healthz")}
# Documentation is public: it describes the API and holds no data.
DOCS = {"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}
PROJECTOR_ROUTES = {("GET", "/readyz"): ADMIN, ("GET", "/metrics"): ADMIN}
LEAKS = ("Traceback", "jwt", "PyJWT", "signature", "kid", "expired", "audience", "uvicorn")


def scope_of(service: str, method: str, path: str) -> str:
    if path in ("/metrics", "/readyz"):
        return ADMIN
    return WRITE if service == "command" else READ


def routes(system: RunningSystem) -> list[tuple[str, str, str, str]]:
    """(service, base url, method, path) of every documented operation, and the projector's."""
    found = []
    for service, url in (("command", system.command_url), ("query", system.query_url)):
        document = httpx.get(f"{url}/openapi.json", timeout=10).json()
        for path, item in document["paths"].items():
            for method in item:
                if method in ("get", "post", "patch", "put", "delete"):
                    found.append((service, url, method.upper(), path))
    found += [("projector", system.projector_url, m, p) for m, p in PROJECTOR_ROUTES]
    return found


def call(url: str, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    concrete = path.replace("{actionItemId}", str(uuid.uuid4())).replace(
        "{commandId}", str(uuid.uuid4())
    )
    body: dict[str, Any] | None = None
    content_type = "application/json"
    if method == "POST":
        body = {"title": "auth check"}
    elif method == "PATCH":
        body, content_type = {"title": "auth check"}, "application/merge-patch+json"
    return httpx.request(
        method,
        f"{url}{concrete}",
        json=body,
        headers={**headers, "Content-Type": content_type} if body is not None else headers,
        timeout=15,
    )


def test_every_protected_route_refuses_every_bad_token(system: RunningSystem) -> None:
    checked = 0
    for service, url, method, path in routes(system):
        if (method, path) in OPEN:
            continue
        scope = scope_of(service, method, path)
        for name, (headers, status) in refused_tokens(scope).items():
            answer = call(url, method, path, headers)
            where = f"{service} {method} {path} with {name}"
            assert answer.status_code == status, (where, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json", where
            assert answer.headers["www-authenticate"].startswith("Bearer"), where
            assert not any(leak in answer.text for leak in LEAKS), (where, answer.text)
            assert "server" not in answer.headers, where
            checked += 1
        allowed = call(url, method, path, bearer("right-scope", scope))
        assert allowed.status_code not in (401, 403), (service, method, path, allowed.text)
    assert checked >= 9 * 10, checked


def test_healthz_and_docs_stay_open(system: RunningSystem) -> None:
    for url in (system.command_url, system.query_url, system.projector_url):
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    for url in (system.command_url, system.query_url):
        for path in ("/openapi.json", "/docs"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, (url, path)


def test_a_read_only_token_can_never_write(system: RunningSystem) -> None:
    reader = bearer("reader", READ, ADMIN)
    created = httpx.post(
        f"{system.command_url}/action-items", json={"title": "no"}, headers=reader, timeout=15
    )
    assert created.status_code == 403, created.text
    patched = httpx.patch(
        f"{system.command_url}/action-items/{uuid.uuid4()}",
        json={"title": "no"},
        headers={**reader, "Content-Type": "application/merge-patch+json"},
        timeout=15,
    )
    assert patched.status_code == 403, patched.text


@pytest.mark.parametrize("scope", [WRITE, READ])
def test_the_openapi_documents_state_the_bearer_scheme(system: RunningSystem, scope: str) -> None:
    url = system.command_url if scope == WRITE else system.query_url
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) in OPEN:
                assert not operation.get("security"), path
                continue
            expected = ADMIN if path in ("/metrics", "/readyz") else scope
            assert operation["security"] == [{"bearerAuth": [expected]}], (method, path)
            assert "401" in operation["responses"] and "403" in operation["responses"], path
