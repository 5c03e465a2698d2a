"""servicekit's shared HTTP plumbing: the operator routes, request metrics, and opaque tokens."""

from __future__ import annotations

import base64
import json
import warnings

import pytest
from fastapi import FastAPI
from starlette.types import Scope

from servicekit.ops_routes import RequestMetrics, install_ops_routes, method_label, not_ready
from servicekit.problems import install_problem_handlers
from servicekit.tokens import BadTokenText, decode_token, encode_token

with warnings.catch_warnings():
    # Starlette asks to move its TestClient to httpx2, which this project does not install.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def app_with(ready: bool, seen: list[tuple[str, str, int]]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    async def readiness() -> dict[str, str]:
        if not ready:
            raise not_ready(["store"], "store: refused", retry_after=7)
        return {"status": "ready"}

    def started(scope: Scope, status: int, seconds: float) -> None:
        seen.append(("start", method_label(scope), status))

    def complete(scope: Scope, status: int, seconds: float) -> None:
        seen.append(("complete", method_label(scope, "other"), status))

    app.add_middleware(RequestMetrics, on_response_start=started, on_complete=complete)
    install_ops_routes(app, readiness)
    return app


def test_operator_routes_answer_and_readiness_names_what_is_down() -> None:
    seen: list[tuple[str, str, int]] = []
    with TestClient(app_with(True, seen)) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        assert http.get("/metrics").headers["content-type"].startswith("text/plain")
    with TestClient(app_with(False, seen)) as http:
        answer = http.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["down"] == ["store"]
    assert answer.json()["title"] == "Not Ready"


def test_the_middleware_sees_every_answer_at_start_and_at_completion() -> None:
    seen: list[tuple[str, str, int]] = []
    with TestClient(app_with(True, seen)) as http:
        http.get("/nowhere")
        http.request("BREW", "/healthz")
    assert seen == [
        ("start", "GET", 404),
        ("complete", "GET", 404),
        ("start", "OTHER", 405),
        ("complete", "other", 405),
    ]


@pytest.mark.parametrize("value", [{"c": "x", "p": 1, "o": 2}, ["a", "b", "0123"], "text", 7])
def test_a_token_decodes_to_what_was_encoded_in_either_json_style(value: object) -> None:
    assert decode_token(encode_token(value)) == value
    assert decode_token(encode_token(value, compact=False)) == value


def test_the_token_format_is_unpadded_base64url_of_json() -> None:
    issued = base64.urlsafe_b64encode(json.dumps({"c": "id", "p": 0, "o": 5}).encode())
    text = issued.decode().rstrip("=")
    assert encode_token({"c": "id", "p": 0, "o": 5}, compact=False) == text
    assert decode_token(text) == {"c": "id", "p": 0, "o": 5}


@pytest.mark.parametrize("text", ["", "x" * 201, "!!!", "bm90IGpzb24", "\u00e9"])
def test_anything_else_is_a_bad_token(text: str) -> None:
    with pytest.raises(BadTokenText):
        decode_token(text)
