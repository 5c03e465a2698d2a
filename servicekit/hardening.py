"""What every HTTP answer carries and what a browser may do with it.

- Security headers on every response (``SecurityHeaders``): no sniffing, no
  framing, no referrer, a Content-Security-Policy that allows nothing on API
  answers and only this origin's assets on the docs pages, ``Cache-Control:
  no-store`` unless the route chose its own.
- CORS closed by default: only the origins in CORS_ALLOW_ORIGINS (comma-separated,
  exact origins such as ``https://app.example``) get CORS headers; no credentials
  (tokens travel in the Authorization header, never in cookies).
- No server banner: uvicorn runs with ``--no-server-header`` (infra/services.sh,
  the projector's server config); errors are problem bodies without stack traces
  (servicekit/problems.py).
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.docs import ASSETS_URL, DOC_PATHS
from servicekit.ratelimit import parse_limit

_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc: their scripts and styles from /docs/assets, one inline bootstrap
# script, ReDoc's web worker from a blob, requests to this origin only.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Headers a browser client may send and read across origins (when CORS is opened).
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "X-Client-Id",
    "X-Correlation-Id",
    "Consistency-Token",
)
CORS_EXPOSE_HEADERS = (
    "ETag",
    "Location",
    "Retry-After",
    "X-Correlation-Id",
    "Consistency-Token",
    "WWW-Authenticate",
)


class HttpSettings(BaseSettings):
    """HTTP hardening settings every HTTP service reads at start-up."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    cors_allow_origins: str = Field(default="", max_length=4000)
    # Per caller (token sub), command API writes only; `limits` syntax.
    rate_limit_writes: str = Field(default="500/second", min_length=1)

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            if not _ORIGIN_RE.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example[:port]")
        return value

    @field_validator("rate_limit_writes")
    @classmethod
    def _limit(cls, value: str) -> str:
        parse_limit(value)
        return value

    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]


def _is_docs(path: str) -> bool:
    return path in DOC_PATHS or path.startswith(ASSETS_URL + "/")


class SecurityHeaders:
    """Pure ASGI middleware: adds the security headers to every HTTP response start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = _is_docs(str(scope.get("path", "")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in COMMON_HEADERS if h[0] not in present)
                if b"content-security-policy" not in present:
                    csp = DOCS_CSP if docs else API_CSP
                    headers.append((b"content-security-policy", csp.encode()))
                if b"cache-control" not in present and not docs:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_hardening(app: FastAPI, settings: HttpSettings) -> None:
    """Security headers always; CORS only for the configured origins (none: closed)."""
    origins = settings.origins()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            max_age=600,
        )
    # Outermost, outside Starlette's ServerErrorMiddleware too: a 500 and a CORS preflight
    # answer carry the headers as well.
    build_stack = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build_stack())

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
