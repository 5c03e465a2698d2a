"""One call that makes an HTTP service's app follow "Who may call" and the hardening rules.

``protect(app, "command_api")``: bearer authentication (servicekit/auth.py), the
offline docs pages (servicekit/docs.py), security headers and CORS
(servicekit/hardening.py). Routes then say which scope they need with
``needs(scope)`` (route keyword arguments: the dependency and the documented
401/403 answers); ``/healthz`` and the docs pages stay open.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from servicekit.auth import (
    ADMIN,
    Authenticator,
    install_auth,
    load_authenticator,
    require_scope,
)
from servicekit.docs import install_docs
from servicekit.hardening import HttpSettings, install_hardening
from servicekit.settings import load_settings

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "Bearer, with error= and scope= as RFC 6750 describes",
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer"},
    }
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before the next request",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM_REF}},
    }
    if headers:
        answer["headers"] = headers
    return answer


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _problem(
        "No bearer token, or one that is expired, malformed or wrongly signed", WWW_AUTHENTICATE
    ),
    403: _problem("The token does not grant the scope this operation needs", WWW_AUTHENTICATE),
}
RATE_LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: _problem("Too many requests from this caller (the token's sub)", RETRY_AFTER),
}
METRICS_ROUTE: dict[str, Any] = {
    "summary": "Prometheus metrics (text exposition format)",
    "responses": {
        200: {
            "description": "Prometheus text exposition format 0.0.4/1.0.0",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}


def needs(scope: str, *, rate_limited: bool = False) -> dict[str, Any]:
    """Route keyword arguments: the scope's dependency and the answers it can give."""
    responses = dict(AUTH_RESPONSES)
    if rate_limited:
        responses.update(RATE_LIMIT_RESPONSES)
    return {"dependencies": [Depends(require_scope(scope))], "responses": responses}


def merged(route: dict[str, Any] | None, scope: str = ADMIN) -> dict[str, Any]:
    """``route`` (add_api_route keyword arguments) with ``needs(scope)`` laid over it."""
    route = dict(route or {})
    extra = needs(scope)
    route["dependencies"] = [*route.get("dependencies", []), *extra["dependencies"]]
    route["responses"] = {**route.get("responses", {}), **extra["responses"]}
    return route


def protect(
    app: FastAPI,
    service: str,
    *,
    authenticator: Authenticator | None = None,
    http: HttpSettings | None = None,
) -> HttpSettings:
    """Authentication, offline docs, security headers and CORS on ``app``; the HTTP settings."""
    install_auth(app, authenticator or load_authenticator(), service)
    install_docs(app)
    http = http or load_settings(HttpSettings)
    install_hardening(app, http)
    return http
