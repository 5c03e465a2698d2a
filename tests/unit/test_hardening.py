"""Security headers, CORS closed by default, and the per-caller rate limit, in-process."""

from __future__ import annotations

import time

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from servicekit.auth import WRITE, Authenticator, Caller, install_auth, require_scope
from servicekit.docs import install_docs
from servicekit.hardening import HttpSettings, install_hardening
from servicekit.problems import install_problem_handlers
from servicekit.ratelimit import RateLimiter, parse_limit, rate_limited


def app_with(settings: HttpSettings, limiter: RateLimiter | None = None) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, Authenticator([], disabled=True), "test")
    install_docs(app)
    install_hardening(app, settings)
    writer = require_scope(WRITE)
    if limiter is not None:
        writer = rate_limited(limiter, writer)

    @app.post("/write")
    async def write(caller: Caller = Depends(writer)) -> dict[str, str]:
        return {"caller": caller.sub}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    return app


def settings(**values: str) -> HttpSettings:
    return HttpSettings.model_validate(values)


def test_every_answer_has_the_security_headers_and_no_server_banner() -> None:
    client = TestClient(app_with(settings()), raise_server_exceptions=False)
    for answer in (client.post("/write"), client.get("/nope"), client.get("/boom")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        assert answer.headers["cache-control"] == "no-store"
        assert "server" not in answer.headers
    boom = client.get("/boom")
    assert boom.status_code == 500
    assert "secret" not in boom.text and "Traceback" not in boom.text
    docs = client.get("/docs")
    assert "'self'" in docs.headers["content-security-policy"]


def test_cors_is_closed_by_default_and_opens_for_configured_origins_only() -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    closed = TestClient(app_with(settings()))
    answer = closed.options("/write", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    assert answer.status_code == 405
    assert "access-control-allow-origin" not in closed.post("/write", headers=preflight).headers

    opened = TestClient(app_with(settings(cors_allow_origins="https://app.example")))
    answer = opened.options("/write", headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    other = opened.options("/write", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    "values",
    [
        {"cors_allow_origins": "*"},
        {"cors_allow_origins": "app.example"},
        {"rate_limit_writes": "x"},
    ],
)
def test_bad_http_settings_are_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        settings(**values)


def test_the_rate_limit_is_per_caller_and_answers_429_with_retry_after() -> None:
    assert [str(i) for i in parse_limit("2/second;10/minute")] == [
        "2 per 1 second",
        "10 per 1 minute",
    ]
    limiter = RateLimiter("2/minute")
    client = TestClient(app_with(settings(), limiter))
    assert [client.post("/write").status_code for _ in range(3)] == [200, 200, 429]
    refused = client.post("/write")
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["type"] == "/problems/rate-limited"
    assert limiter.check("someone-else") is None  # another caller has its own window


def test_a_moving_window_frees_a_slot_when_its_oldest_hit_leaves(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    limiter = RateLimiter("2/second")
    assert limiter.check("a") is None
    now[0] += 0.5
    assert limiter.check("a") is None
    assert limiter.check("a") == 1  # full: the oldest hit leaves in 0.5 s, said as 1 s
    now[0] += 0.6  # the first hit has left the window, the second has not
    assert limiter.check("a") is None
    assert limiter.check("a") == 1
